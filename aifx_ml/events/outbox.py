"""The transactional outbox: an event is a row written with the change it announces.

If the change rolls back, so does its event; if Redis is down or not configured, the event
waits in `event_outbox` until a relay publishes it. Nothing is announced that did not happen,
and nothing that happened goes unannounced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert
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
    """The JSON message every channel carries: {"timestamp", "channel", "data"}."""
    if channel not in CHANNELS:
        raise ValueError(
            f"unknown event channel {channel!r}: expected one of {', '.join(CHANNELS)}"
        )
    return {"timestamp": timestamp.isoformat(), "channel": channel, "data": dict(data)}


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
        session.execute(insert(EventOutbox), rows)
    return len(rows)
