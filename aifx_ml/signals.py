"""Recording trading signals in `trading_signals`, each announced on `ml:new_prediction`."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import pandas as pd
from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from aifx_ml.db.models import ShadowSignal, TradingSignal
from aifx_ml.db.types import to_rows
from aifx_ml.domain import SIGNALS
from aifx_ml.errors import InvalidInputError
from aifx_ml.events.outbox import enqueue_many
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
