"""What every command shares: the settings, the engine, the clock, parsing and output."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from aifx_ml.config import Settings
from aifx_ml.db.engine import ensure_schema, make_engine
from aifx_ml.errors import InvalidInputError
from aifx_ml.events.relay import RelayReport, relay_outbox

if TYPE_CHECKING:
    from registry.mlflow_store import MlflowModelStore

# Logs and CI are not terminals; 80 columns would truncate every table there.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


@dataclass
class AppContext:
    """Built once per invocation by the root callback and handed to every command."""

    settings: Settings
    debug: bool = False
    _engine: Engine | None = field(default=None, repr=False)
    _store: MlflowModelStore | None = field(default=None, repr=False)

    def engine(self, *, migrate: bool = True) -> Engine:
        """The database engine, schema checked (and created on a fresh database) on first use."""
        if self._engine is None:
            self._engine = make_engine(self.settings.db_url)
            if migrate:
                ensure_schema(self._engine, auto_upgrade=self.settings.is_embedded)
        return self._engine

    def now(self) -> datetime:
        """The wall clock, read only here at the edge; the library takes `as_of`."""
        return datetime.now(UTC)


# What TensorFlow 2.21's C++ side prints at import whatever TF_CPP_MIN_LOG_LEVEL says: absl's
# note that it is not initialized yet, and oneDNN's notice.
TF_START_UP_NOISE = ("before absl::InitializeLog() is called", "oneDNN custom operations are on")


def quiet_tensorflow() -> None:
    """Import TensorFlow now, with its start-up lines kept off the terminal: the commands that
    train, load or serve models call this first. Whatever else it writes to stderr while it
    loads (a real problem) is passed on."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401, PLC0415  (only the commands that need it)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            said = caught.read().decode("utf-8", errors="replace").splitlines()
    for line in said:
        if not any(noise in line for noise in TF_START_UP_NOISE):
            print(line, file=sys.stderr)  # noqa: T201  (passed on as TensorFlow wrote it)


def model_store(app_ctx: AppContext) -> MlflowModelStore:
    """The model store the settings name (MLflow), built once per invocation."""
    # MLflow takes seconds to import: only the commands that use the registry pay for it.
    from registry.mlflow_store import MlflowModelStore  # noqa: PLC0415  (MLflow: only the commands that use the registry)

    quiet_tensorflow()  # its models are Keras models
    if app_ctx._store is None:
        app_ctx._store = MlflowModelStore.from_settings(app_ctx.settings)
    return app_ctx._store


def app_context(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj


def parse_time(value: str, option: str) -> datetime:
    """A date or timestamp from the command line; naive means UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidInputError(
            f"invalid {option} {value!r}: expected a date like 2026-01-31 or an ISO timestamp"
        ) from None
    if pd.isna(ts):
        raise InvalidInputError(f"invalid {option} {value!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    moment: datetime = ts.to_pydatetime()
    return moment


def parse_list(value: str | None) -> list[str] | None:
    """`EUR/USD,GBP/USD` → ['EUR/USD', 'GBP/USD']; None or empty → None (meaning all)."""
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def frame_table(frame: pd.DataFrame, title: str | None = None) -> Table:
    """A rich table of a small DataFrame, numbers right-aligned and timestamps in ISO form."""
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(
            str(column), justify="right" if numeric else "left", min_width=len(str(column))
        )
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:,.4f}"
    return str(value)


def relay_after_command(app_ctx: AppContext) -> None:
    """Deliver the events a command committed, best effort: with Redis away (or not
    configured) they wait in the outbox for the next relay, as always, and a line says so."""
    url = app_ctx.settings.redis_url
    if url is None:
        return
    try:
        report = relay_outbox(app_ctx.engine(), url, now=app_ctx.now, timeout=2.0)
    except Exception as exc:  # the command itself succeeded: never fail it here
        report = RelayReport(error=str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    if report.error is not None:
        err_console.print(
            f"[yellow]events not delivered yet ({report.error}); they wait in the outbox[/]",
            soft_wrap=True,
            highlight=False,
        )
