"""The transactional outbox: an event is a row written with the change it announces.

If the change rolls back, so does its event; if Redis is down or not configured, the event
waits in `event_outbox` until a relay publishes it. Nothing is announced that did not happen,
and nothing that happened goes unannounced. Rows are numbered (`seq`) in the order they were
written, which is the order the relay publishes them in.

A commit that wrote events wakes whoever delivers them: listeners in this process
(`on_commit`: the service's relay loop, the CLI's relay as a command ends), and on PostgreSQL
any process that LISTENs on `NOTIFY_CHANNEL` (the NOTIFY is part of the transaction, so it is
sent at commit, and not at all on rollback).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, event, func, insert, select, text
from sqlalchemy.orm import Session

from aifx_ml.db.models import EventOutbox
from aifx_ml.events.schemas import (
    CHANNELS,
    PAYLOADS,
    UNVERSIONED,
    EventPayload,
    InvalidEventError,
)

__all__ = [
    "CHANNELS",
    "NOTIFY_CHANNEL",
    "InvalidEventError",
    "enqueue",
    "enqueue_many",
    "envelope",
    "events_committed",
    "on_commit",
    "published_message",
]

NOTIFY_CHANNEL = "aifx_outbox"  # PostgreSQL NOTIFY on every commit that wrote events
_FLAG = "aifx.events_written"  # in Session.info while a transaction holds unannounced events
_listeners: list[Callable[[], None]] = []
_listeners_lock = threading.Lock()


def on_commit(listener: Callable[[], None]) -> Callable[[], None]:
    """Call `listener()` after each commit in this process that wrote events (it must be
    quick and must not raise: it runs in the committing thread). Returns what removes it."""
    with _listeners_lock:
        _listeners.append(listener)

    def remove() -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def _committed(session: Session) -> None:
    if session.info.pop(_FLAG, False):
        events_committed()


def events_committed() -> None:
    """Tell this process's `on_commit` listeners that a commit wrote events: what a writer
    that commits outside a Session (one statement, autocommitted) calls after it."""
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener()


def _rolled_back(session: Session) -> None:
    session.info.pop(_FLAG, None)


event.listen(Session, "after_commit", _committed)
event.listen(Session, "after_rollback", _rolled_back)


def envelope(payload: EventPayload, timestamp: datetime) -> dict[str, Any]:
    """The JSON message an event is kept as: {"schema_version", "timestamp", "channel", "data"}.

    This is what the outbox row keeps (with the payload's version at the time it was written);
    the relay puts the row's id in front of it when it publishes (see `published_message`).
    """
    _check_registered(payload)
    return {
        "schema_version": payload.schema_version,
        "timestamp": timestamp.isoformat(),
        "channel": payload.channel,
        "data": payload.to_data(),
    }


def published_message(event_id: uuid.UUID | str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The message as it goes out: {"id", "schema_version", "timestamp", "channel", "data"}.

    The id is the outbox row's: delivery is at least once, and it is how consumers recognise
    an event they already have. It is added here rather than stored in the payload so the row
    cannot disagree with itself. A row written before versions were recorded goes out as
    version 1, which is what it is.
    """
    message: dict[str, Any] = {
        "id": str(event_id),
        "schema_version": UNVERSIONED,
        "timestamp": None,
        "channel": None,
    }
    message.update(payload)  # keeps this key order (PostgreSQL's JSONB does not keep any)
    return message


def enqueue(session: Session, payload: EventPayload, as_of: datetime) -> None:
    """Add one event to the outbox inside the caller's transaction, on its payload's channel:
    `enqueue(session, ModelDeployed(...), as_of)`."""
    enqueue_many(session, [payload], as_of)


def enqueue_many(session: Session, payloads: Iterable[EventPayload], as_of: datetime) -> int:
    """Add one event per payload to the outbox in a single statement; returns how many.

    Each event goes on its payload's channel (one call may mix channels; they keep their
    order).
    """
    messages = [envelope(payload, as_of) for payload in payloads]
    rows = [{"channel": m["channel"], "payload": m, "created_at": as_of} for m in messages]
    if rows:
        # Core, into the table: SQLAlchemy's ORM bulk path costs several times more per row.
        statement = insert(cast(Table, EventOutbox.__table__))
        if session.get_bind().dialect.name == "sqlite":
            # No sequences in SQLite. An INSERT holds the write lock from its first step, so
            # max(seq) read inside it cannot race another writer; each row of the
            # executemany sees the ones before it.
            statement = statement.values(
                seq=select(func.coalesce(func.max(EventOutbox.seq), 0) + 1).scalar_subquery()
            )
        session.execute(statement, rows)
        if not session.info.get(_FLAG):
            session.info[_FLAG] = True
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
    return len(rows)


def _check_registered(payload: object) -> None:
    """Only a channel's own model goes on it: not a dict, not a subclass of a model."""
    if not isinstance(payload, EventPayload):
        raise TypeError(
            f"expected an event payload model, got {type(payload).__name__}: build one of "
            "aifx_ml.events.schemas.PAYLOADS (e.g. NewPrediction(...)); its class is its channel"
        )
    channel = getattr(payload, "channel", None)
    if PAYLOADS.get(str(channel)) is not type(payload):
        raise InvalidEventError(
            f"{type(payload).__name__} is not the payload model of any channel: expected one "
            f"of {', '.join(m.__name__ for m in PAYLOADS.values())}"
        )
