"""The transactional outbox: an event is a row written with the change it announces.

If the change rolls back, so does its event; if Redis is down or not configured, the event
waits in `event_outbox` until a relay publishes it. Nothing is announced that did not happen,
and nothing that happened goes unannounced. Rows are numbered (`seq`) in the order they were
written, which is the order the relay publishes them in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from aifx_ml.db.models import EventOutbox

CHANNELS: tuple[str, ...] = (
    "ml:new_market_data",
    "ml:new_prediction",
    "ml:signal_outcome",
    "ml:training_started",
    "ml:training_completed",
    "ml:model_deployed",
    "ml:ab_test_created",
    "ml:ab_test_completed",
)


def envelope(channel: str, data: Mapping[str, Any], timestamp: datetime) -> dict[str, Any]:
    """The JSON message every channel carries: {"timestamp", "channel", "data"}.

    This is what the outbox row keeps; the relay puts the row's id in front of it when it
    publishes (see `published_message`).
    """
    if channel not in CHANNELS:
        raise ValueError(
            f"unknown event channel {channel!r}: expected one of {', '.join(CHANNELS)}"
        )
    return {"timestamp": timestamp.isoformat(), "channel": channel, "data": dict(data)}


def published_message(event_id: uuid.UUID | str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The message as it goes out: {"id", "timestamp", "channel", "data"}.

    The id is the outbox row's: delivery is at least once, and it is how consumers recognise
    an event they already have. It is added here rather than stored in the payload so the row
    cannot disagree with itself.
    """
    message: dict[str, Any] = {"id": str(event_id), "timestamp": None, "channel": None}
    message.update(payload)  # keeps this key order (PostgreSQL's JSONB does not keep any)
    return message


def enqueue(session: Session, channel: str, data: Mapping[str, Any], as_of: datetime) -> None:
    """Add one event to the outbox inside the caller's transaction."""
    enqueue_many(session, channel, [data], as_of)


def enqueue_many(
    session: Session, channel: str, items: Iterable[Mapping[str, Any]], as_of: datetime
) -> int:
    """Add one event per item to the outbox in a single statement; returns how many."""
    rows = [
        {"channel": channel, "payload": envelope(channel, data, as_of), "created_at": as_of}
        for data in items
    ]
    if rows:
        statement = insert(EventOutbox)
        if session.get_bind().dialect.name == "sqlite":
            # No sequences in SQLite. An INSERT holds the write lock from its first step, so
            # max(seq) read inside it cannot race another writer; each row of the
            # executemany sees the ones before it.
            statement = statement.values(
                seq=select(func.coalesce(func.max(EventOutbox.seq), 0) + 1).scalar_subquery()
            )
        session.execute(statement, rows)
    return len(rows)
