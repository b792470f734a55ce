"""Recording trading signals in `trading_signals`, each announced on `ml:new_prediction`."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

import pandas as pd
from sqlalchemy import Engine, Table, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from aifx_ml.db.engine import json_dumps, transaction
from aifx_ml.db.models import EVENT_SEQUENCE, EventOutbox, ShadowSignal, TradingSignal
from aifx_ml.db.types import UTCDateTime, to_rows
from aifx_ml.domain import SIGNALS
from aifx_ml.errors import InvalidInputError
from aifx_ml.events.outbox import NOTIFY_CHANNEL, enqueue_many, envelope, events_committed
from aifx_ml.events.schemas import NewPrediction
from aifx_ml.markets import validate_pair, validate_timeframe

SIGNAL_COLUMNS = ("pair", "timeframe", "signal", "confidence", "entry_price", "created_at")
OPTIONAL_COLUMNS = ("probability", "model_version", "ab_test_id", "routing_key")


def record_signals(session: Session, signals: pd.DataFrame, as_of: datetime) -> list[uuid.UUID]:
    """Insert signals as pending (SIGNAL_COLUMNS plus any OPTIONAL_COLUMNS); returns their ids."""
    missing = [c for c in SIGNAL_COLUMNS if c not in signals]
    if missing:
        raise InvalidInputError(f"signals lack column(s) {', '.join(missing)}")
    for pair in signals["pair"].unique():
        validate_pair(str(pair))
    for timeframe in signals["timeframe"].unique():
        validate_timeframe(str(timeframe))
    unknown = set(signals["signal"]) - set(SIGNALS)
    if unknown:
        raise InvalidInputError(
            f"unknown signal value(s) {sorted(unknown)}: expected one of {SIGNALS}"
        )
    if len(signals) == 0:
        return []
    frame = signals[[c for c in (*SIGNAL_COLUMNS, *OPTIONAL_COLUMNS) if c in signals]].copy()
    created = pd.to_datetime(frame["created_at"], utc=True)
    frame["actual_outcome"] = "pending"
    rows = to_rows(frame)
    for row, ts in zip(rows, created, strict=True):
        row["id"] = uuid.uuid4()
        row["created_at"] = ts.to_pydatetime()
    insert_signal_rows(session, rows, as_of)
    return [r["id"] for r in rows]


def check_storable_text(name: str, value: str | None) -> None:
    """Refuse text a database cannot keep as an identifier: control characters (PostgreSQL
    rejects NUL) and lone surrogates (not encodable as UTF-8). Raises InvalidInputError."""
    if value is None:
        return
    for position, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidInputError(
                f"{name} holds U+{ord(char):04X} at position {position}: control characters "
                "and lone surrogates cannot be stored"
            )


SHADOW = "shadow"  # the key of a served row's shadow answer (a `shadow_signals` row), if any
SIGNAL_TABLE = cast(Table, TradingSignal.__table__)
SHADOW_TABLE = cast(Table, ShadowSignal.__table__)


def insert_signal_rows(session: Session, rows: list[dict[str, Any]], as_of: datetime) -> None:
    """Insert ready rows (ids and UTC `created_at` set) and announce each on ml:new_prediction.

    The lean path the prediction service takes per request; `record_signals` checks a frame
    first and comes here too. A row may carry its shadow answer under `SHADOW`: it is stored
    in `shadow_signals` in the same transaction (and not announced: nobody was served it).
    """
    if not rows:
        return
    served, shadows = split_shadows(rows)
    events = _events(served)
    # Core inserts into the tables (the rows are plain column dicts): SQLAlchemy's ORM bulk
    # path costs several times as much per row, and the service writes on every request.
    session.execute(insert(SIGNAL_TABLE), served)
    if shadows:
        session.execute(insert(SHADOW_TABLE), shadows)
    enqueue_many(session, events, as_of)


def insert_absent_signal_rows(
    session: Session, rows: Sequence[dict[str, Any]], as_of: datetime
) -> int:
    """`insert_signal_rows` for rows that may already be stored (a replay): a row whose id is
    in the table is skipped with its event, so running it twice stores and announces nothing
    twice, even when two processes replay at once. Returns how many rows were new."""
    if not rows:
        return 0
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(SIGNAL_TABLE)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(SIGNAL_TABLE.c.id)
    )
    served, shadows = split_shadows(rows)
    events = _events(served)
    new = set(session.scalars(statement, served).all())
    fresh = [s for s in shadows if s["served_signal_id"] in new]
    if fresh:  # a served row already stored came with its shadow: both are there
        session.execute(insert(SHADOW_TABLE), fresh)
    enqueue_many(session, [e for e in events if e.signal_id in new], as_of)
    return len(new)


def store_absent_signal_rows(
    engine: Engine, rows: Sequence[dict[str, Any]], as_of: datetime, *, synchronous: bool = True
) -> int:
    """`insert_absent_signal_rows` in a transaction of its own; returns how many rows were new.

    On PostgreSQL, rows shaped as the prediction service writes them (`SERVED_KEYS`, and a
    shadow answer's `SHADOW_KEYS`) go in one autocommitted statement: the signals, their
    shadow answers and their events together, a single round trip instead of five (begin,
    three inserts, commit), which is most of what recording a prediction costs. Without
    `synchronous`, the commit does not wait for its WAL flush (this transaction only): a
    server crash could lose the last fraction of a second of rows, never half-write them.
    """
    if not rows:
        return 0
    if engine.dialect.name == "postgresql" and _fits_one_statement(rows):
        return _store_in_one_statement(engine, rows, as_of, synchronous)
    with transaction(engine) as session:
        if not synchronous and engine.dialect.name == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit = off"))
        return insert_absent_signal_rows(session, rows, as_of)


# The keys of a served row and of its shadow answer as the prediction service builds them.
SERVED_KEYS = frozenset(
    ("id", "pair", "timeframe", "signal", "confidence", "probability", "entry_price")
    + ("created_at", "actual_outcome", "model_version", "ab_test_id", "routing_key", "verified")
)
SHADOW_KEYS = frozenset(
    ("id", "ab_test_id", "model_version", "pair", "timeframe", "signal", "confidence")
    + ("probability", "entry_price", "created_at")
)


def _fits_one_statement(rows: Sequence[dict[str, Any]]) -> bool:
    for row in rows:
        shadow = row.get(SHADOW)
        if set(row) - {SHADOW} != SERVED_KEYS:
            return False
        if shadow is not None and (not isinstance(shadow, dict) or set(shadow) != SHADOW_KEYS):
            return False
    return True


def _store_in_one_statement(
    engine: Engine, rows: Sequence[dict[str, Any]], as_of: datetime, synchronous: bool
) -> int:
    served, shadows = split_shadows(rows)
    events = _events(served)  # built first: a row its event would misdescribe is refused
    params: dict[str, Any] = _arrays(SIGNAL_TABLE, sorted(SERVED_KEYS), served, engine, "s_")
    params["s_payload"] = [json_dumps(envelope(e, as_of)) for e in events]
    params["as_of"] = UTCDateTime().process_bind_param(as_of, engine.dialect)
    if shadows:
        keys = sorted(SHADOW_KEYS | {"served_signal_id", "actual_outcome"})
        params.update(_arrays(SHADOW_TABLE, keys, shadows, engine, "h_"))
    statement = _one_statement(bool(shadows), synchronous)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        new = len(conn.exec_driver_sql(statement, params).all())
    if new:
        events_committed()
    return new


def _arrays(
    table: Table, keys: Sequence[str], rows: Sequence[dict[str, Any]], engine: Engine, prefix: str
) -> dict[str, list[Any]]:
    """One array per column (timestamps checked UTC-aware, as `UTCDateTime` binds them)."""
    out: dict[str, list[Any]] = {}
    for key in keys:
        values = [row[key] for row in rows]
        column_type = table.c[key].type
        if isinstance(column_type, UTCDateTime):
            values = [column_type.process_bind_param(v, engine.dialect) for v in values]
        out[prefix + key] = values
    return out


@cache
def _one_statement(with_shadows: bool, synchronous: bool) -> str:
    """The PostgreSQL statement that stores served rows (skipping ids already stored), their
    shadow answers and one ml:new_prediction event per new row (in the rows' order), and
    notifies the relays; it returns the new rows' ids. Columns are cast to their base types
    (text, not varchar(7)): a value too long is refused by the column, never cut by a cast."""

    def unnest(columns: Sequence[tuple[str, str]], prefix: str, alias: str) -> str:
        arrays = ", ".join(f"%({prefix}{name})s::{kind}[]" for name, kind in columns)
        names = ", ".join(name for name, _ in columns)
        return f"unnest({arrays}) WITH ORDINALITY AS {alias}({names}, n)"

    def typed(table: Table, keys: Sequence[str]) -> list[tuple[str, str]]:
        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        return [(k, re.sub(r"\(\d+\)", "", table.c[k].type.compile(dialect))) for k in keys]

    served, payload = sorted(SERVED_KEYS), [("payload", "jsonb")]
    columns = ", ".join(served)
    outbox = cast(Table, EventOutbox.__table__).name
    parts = [
        f"s AS (SELECT * FROM {unnest(typed(SIGNAL_TABLE, served) + payload, 's_', 'u')})",
        f"new AS (INSERT INTO {SIGNAL_TABLE.name} ({columns}) SELECT {columns} FROM s ORDER BY n "
        "ON CONFLICT (id) DO NOTHING RETURNING id)",
        f"events AS (INSERT INTO {outbox} (id, seq, channel, payload, created_at, attempts) "
        f"SELECT gen_random_uuid(), nextval('{EVENT_SEQUENCE.name}'), "
        f"'{NewPrediction.channel}', s.payload, %(as_of)s, 0 "
        "FROM s JOIN new USING (id) ORDER BY s.n RETURNING 1)",
    ]
    if with_shadows:
        keys = sorted(SHADOW_KEYS | {"served_signal_id", "actual_outcome"})
        shadow_columns = ", ".join(keys)
        parts += [
            f"h AS (SELECT * FROM {unnest(typed(SHADOW_TABLE, keys), 'h_', 'v')})",
            f"shadows AS (INSERT INTO {SHADOW_TABLE.name} ({shadow_columns}) "
            f"SELECT {', '.join('h.' + k for k in keys)} FROM h "
            "JOIN new ON new.id = h.served_signal_id ORDER BY h.n)",
        ]
    settings = "" if synchronous else ", set_config('synchronous_commit', 'off', true)"
    return (
        f"WITH {', '.join(parts)} "
        f"SELECT new.id, (SELECT pg_notify('{NOTIFY_CHANNEL}', '') FROM events LIMIT 1){settings} "
        "FROM new"
    )


def split_shadows(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The served rows without their shadow answers, and the shadow rows (pending, each
    pointing at its served row)."""
    served, shadows = [], []
    for row in rows:
        shadow = row.get(SHADOW)
        if shadow is None:
            served.append(row)
            continue
        served.append({k: v for k, v in row.items() if k != SHADOW})
        shadows.append({**shadow, "served_signal_id": row["id"], "actual_outcome": "pending"})
    return served, shadows


def _events(rows: Sequence[dict[str, Any]]) -> list[NewPrediction]:
    # Built first: a row its event would misdescribe is refused before anything is written.
    return [
        NewPrediction(
            signal_id=r["id"],
            pair=r["pair"],
            timeframe=r["timeframe"],
            signal=r["signal"],
            confidence=float(r["confidence"]),
            entry_price=float(r["entry_price"]),
            created_at=r["created_at"],
            model_version=r.get("model_version"),
            ab_test_id=r.get("ab_test_id"),
        )
        for r in rows
    ]
