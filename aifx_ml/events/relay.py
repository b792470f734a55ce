"""The relay: publishes what waits in the outbox to Redis, in the order it was written.

Each pending event goes out twice in one pipeline: PUBLISH on its channel (live listeners)
and XADD to the stream `aifx:events` (consumers that were away catch up from there). Only
then is it marked published. If Redis fails half way (or the database before the mark
commits), nothing of the batch is marked, so it is offered again next time. It still reaches
Redis once: both commands run in one server-side script that first sets a marker key for the
event id (`<stream>:sent:<id>`, kept `SENT_TTL_SECONDS`); an event whose marker exists is
skipped. Only a repeat after the marker expired (an outbox left unmarked for over a day) could
reach the stream twice; consumers drop such a repeat by the event id (see `consumers.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import OperationalError

from aifx_ml.db.models import EventOutbox
from aifx_ml.events.outbox import published_message

STREAM = "aifx:events"
# Bounds what Redis keeps for late consumers (tens of MB of typical events); XADD trims
# approximately, which is cheap (whole nodes at a time).
STREAM_MAXLEN = 100_000
BATCH_SIZE = 1_000
# How long Redis remembers that an event went out, so that a batch offered again (its mark
# was lost with the database connection, or Redis failed half way) is not sent twice.
SENT_TTL_SECONDS = 24 * 3600
# PUBLISH and XADD an event once: the marker key is set only if absent, atomically with both.
# KEYS: stream, marker. ARGV: channel, event id, message, ttl, maxlen (0: untrimmed).
_PUBLISH_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) then
  return 0
end
redis.call('PUBLISH', ARGV[1], ARGV[3])
if tonumber(ARGV[5]) > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*',
             'id', ARGV[2], 'channel', ARGV[1], 'payload', ARGV[3])
else
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'channel', ARGV[1], 'payload', ARGV[3])
end
return 1
"""
# Key of the PostgreSQL advisory lock that lets one relay at a time publish a batch.
RELAY_LOCK_KEY = 0x41_49_46_58_5F_45_56  # "AIFX_EV"

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RelayReport:
    """What one relay run did, and what is still waiting."""

    published: int = 0
    pending: int = 0
    batches: int = 0
    error: str | None = None
    configured: bool = True
    busy: bool = False  # another relay held the lock; it will deliver what waits

    @property
    def ok(self) -> bool:
        """Redis is configured and took everything it was offered."""
        return self.configured and self.error is None


@dataclass(frozen=True)
class OutboxStatus:
    """What waits in the outbox: how much, since when, and why it did not go out."""

    pending: int
    published: int
    oldest_seq: int | None
    oldest_created_at: datetime | None
    max_attempts: int
    last_error: str | None


def redis_client(url: str, *, timeout: float = 5.0) -> redis.Redis:
    """A client that fails fast: the outbox is the retry, so one reconnect attempt is enough."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def relay_events(
    engine: Engine,
    client: redis.Redis,
    *,
    now: Clock,
    batch_size: int = BATCH_SIZE,
    stream: str = STREAM,
    maxlen: int | None = STREAM_MAXLEN,
) -> RelayReport:
    """Publish pending events batch by batch in `seq` order until none is left or Redis fails.

    A failed batch gets its attempts and error recorded and stays pending; the run stops
    there so later events never overtake it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    published = batches = 0
    error: str | None = None
    busy = False
    while True:
        with engine.connect() as conn:
            if not _take_relay_lock(conn):
                busy = True
                break
            sent, error = _relay_batch(conn, client, now, batch_size, stream, maxlen)
            conn.commit()
        published += sent
        batches += 1 if sent else 0
        if error is not None or sent < batch_size:
            break
    return RelayReport(published, count_pending(engine), batches, error, busy=busy)


def _take_relay_lock(conn: Connection) -> bool:
    """Let one relay at a time take a batch, so two never publish the same events.

    SQLite: BEGIN IMMEDIATE takes the database write lock before we read (a plain BEGIN
    would let two relays read the same batch). PostgreSQL: a transaction advisory lock; a
    second relay gives way instead of publishing later batches out of order (which
    SELECT ... FOR UPDATE SKIP LOCKED would do).
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return True
    if conn.dialect.name == "postgresql":
        return bool(conn.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY))))
    return True


def _relay_batch(
    conn: Connection,
    client: redis.Redis,
    now: Clock,
    batch_size: int,
    stream: str,
    maxlen: int | None,
) -> tuple[int, str | None]:
    """Publish the oldest pending batch and mark it, in the caller's transaction."""
    rows = conn.execute(
        select(EventOutbox.seq, EventOutbox.id, EventOutbox.channel, EventOutbox.payload)
        .where(EventOutbox.published_at.is_(None))
        .order_by(EventOutbox.seq)
        .limit(batch_size)
    ).all()
    if not rows:
        return 0, None
    # Marked by the seqs actually read, never by a range: on PostgreSQL a row with a seq
    # inside the range may commit after we read and must not be marked unsent.
    seqs = [row.seq for row in rows]
    publish_once = client.register_script(_PUBLISH_ONCE)
    pipe = client.pipeline(transaction=False)
    for row in rows:
        event_id = str(row.id)
        message = _encode(published_message(event_id, row.payload))
        publish_once(
            keys=[stream, f"{stream}:sent:{event_id}"],
            args=[row.channel, event_id, message, SENT_TTL_SECONDS, maxlen or 0],
            client=pipe,
        )
    try:
        pipe.execute()  # raises after sending all of it if any command failed
    except redis.RedisError as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        conn.execute(
            update(EventOutbox)
            .where(EventOutbox.seq.in_(seqs))
            .values(attempts=EventOutbox.attempts + 1, last_error=error)
        )
        return 0, error
    conn.execute(
        update(EventOutbox)
        .where(EventOutbox.seq.in_(seqs))
        .values(published_at=now(), attempts=EventOutbox.attempts + 1)
    )
    return len(rows), None


def _encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def relay_outbox(
    engine: Engine,
    redis_url: str | None,
    *,
    now: Clock,
    batch_size: int = BATCH_SIZE,
    stream: str = STREAM,
    maxlen: int | None = STREAM_MAXLEN,
    timeout: float = 5.0,
) -> RelayReport:
    """One relay run from the settings' Redis URL, as a flow or a command ends or
    `aifx events relay` runs (`timeout`: seconds to wait for Redis).

    Without a URL nothing is sent: the report says how many events wait for one.
    """
    if redis_url is None:
        return RelayReport(pending=count_pending(engine), configured=False)
    client = redis_client(redis_url, timeout=timeout)
    try:
        return relay_events(
            engine, client, now=now, batch_size=batch_size, stream=stream, maxlen=maxlen
        )
    finally:
        client.close()


def relay_forever(
    engine: Engine,
    client: redis.Redis,
    *,
    now: Clock,
    stop: Callable[[], bool],
    sleep: Callable[[float], None],
    interval: float = 1.0,
    max_backoff: float = 30.0,
    on_report: Callable[[RelayReport], None] | None = None,
    batch_size: int = BATCH_SIZE,
    stream: str = STREAM,
    maxlen: int | None = STREAM_MAXLEN,
) -> int:
    """Relay until `stop()` says so (`aifx events relay --follow`); returns how many went out.

    Waits `interval` seconds between runs; after failures (Redis or the database away) the
    wait doubles up to `max_backoff`, and nothing is lost meanwhile: it waits in the outbox.
    """
    total = failures = 0
    while not stop():
        try:
            report = relay_events(
                engine, client, now=now, batch_size=batch_size, stream=stream, maxlen=maxlen
            )
        except OperationalError as exc:  # the database went away; it keeps the events
            first_line = str(exc.orig or exc).strip().splitlines()[0]
            report = RelayReport(error=f"database: {first_line}")
        total += report.published
        if on_report is not None:
            on_report(report)
        failures = failures + 1 if report.error else 0
        sleep(min(interval * 2 ** (failures - 1), max_backoff) if failures else interval)
    return total


def count_pending(engine: Engine) -> int:
    """How many events wait to be published."""
    with engine.connect() as conn:
        count = conn.scalar(
            select(func.count()).select_from(EventOutbox).where(EventOutbox.published_at.is_(None))
        )
    return int(count or 0)


def outbox_status(engine: Engine) -> OutboxStatus:
    """Pending count, the oldest pending event, and the most recent delivery error."""
    pending = EventOutbox.published_at.is_(None)
    with engine.connect() as conn:
        count, max_attempts = conn.execute(
            select(func.count(), func.coalesce(func.max(EventOutbox.attempts), 0)).where(pending)
        ).one()
        published = conn.scalar(
            select(func.count())
            .select_from(EventOutbox)
            .where(EventOutbox.published_at.is_not(None))
        )
        oldest = conn.execute(
            select(EventOutbox.seq, EventOutbox.created_at)
            .where(pending)
            .order_by(EventOutbox.seq)
            .limit(1)
        ).first()
        # A relay stops at the first batch that fails and starts there next time, so the
        # oldest pending event carries the latest error.
        last_error = conn.scalar(
            select(EventOutbox.last_error)
            .where(pending, EventOutbox.last_error.is_not(None))
            .order_by(EventOutbox.seq)
            .limit(1)
        )
    return OutboxStatus(
        pending=int(count),
        published=int(published or 0),
        oldest_seq=None if oldest is None else int(oldest.seq),
        oldest_created_at=None if oldest is None else oldest.created_at,
        max_attempts=int(max_attempts),
        last_error=last_error,
    )
