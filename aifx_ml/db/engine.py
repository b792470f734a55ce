"""Engines, sessions and schema migrations, for whichever database the settings name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

import migrations
from aifx_ml.errors import SchemaOutdatedError
from aifx_ml.jsonsafe import finite

MIGRATIONS_DIR = Path(migrations.__file__).parent
# The database is away (refused, timed out, connection lost, no pooled connection free):
# the same work may succeed later, unlike a statement the database refuses.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
)


def json_dumps(value: Any) -> str:
    """JSON for the JSON columns: NaN and ±inf (an AUC of a one-class holdout, say) become
    null, which PostgreSQL accepts and every reader understands, instead of bare `NaN`."""
    return json.dumps(finite(value), allow_nan=False, default=str)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; a SQLite file gets its folder, foreign keys and WAL journaling."""
    kwargs.setdefault("json_serializer", json_dumps)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.get_backend_name() == "postgresql":
            # An unreachable server is an error in seconds, not a hang (health checks, flows).
            kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", 5)
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


@contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    """An engine for one unit of work (a task): its connections are closed when it ends."""
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (expire_on_commit=False)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits if the block succeeds, rolls everything back if it raises."""
    with session_factory(engine)() as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    """Alembic configuration pointing at our migrations and at this engine."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest migration this code ships."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for a database we never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Roll migrations back to `revision` (`base` removes every table)."""
    command.downgrade(alembic_config(engine), revision)


def ensure_schema(engine: Engine, auto_upgrade: bool) -> None:
    """Make sure the schema is current before a command touches the tables.

    A brand-new database (no tables of ours) is always created. An older schema is upgraded
    only when `auto_upgrade` (the embedded SQLite default); elsewhere upgrading a shared
    database is a deliberate step, so we stop and say which command does it.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    fresh = current is None and "market_data" not in inspect(engine).get_table_names()
    if fresh or auto_upgrade:
        upgrade(engine)
        return
    raise SchemaOutdatedError(
        f"database schema is at revision {current or 'none'}, this code needs {head}: "
        "run `aifx db upgrade`"
    )
