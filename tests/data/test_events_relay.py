"""The outbox relay against the real Redis (db 15) on SQLite and PostgreSQL: events reach
Pub/Sub and the stream in the order they were written, wait out a Redis outage, and are
never lost nor handed twice to a de-duplicating consumer, whatever the connection does."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pandas as pd
import pytest
import redis
from sqlalchemy import Engine, event, select, update

from aifx_ml.db.engine import transaction
from aifx_ml.db.models import EventOutbox
from aifx_ml.events.consumers import Event, StreamConsumer, read_stream, subscribe
from aifx_ml.events.outbox import CHANNELS, enqueue, enqueue_many
from aifx_ml.events.relay import (
    count_pending,
    outbox_status,
    redis_client,
    relay_events,
    relay_outbox,
)
from aifx_ml.events.schemas import EventPayload, NewPrediction
from aifx_ml.signals import record_signals
from tests.conftest import REDIS_URL, wait_for
from tests.event_payloads import model_deployed, new_prediction, sample_payload
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(client: redis.Redis) -> Iterator[str]:
    """A stream key of this test's own, removed afterwards."""
    key = f"test:aifx:events:{uuid.uuid4().hex[:12]}"
    yield key
    client.delete(key, *client.scan_iter(match=f"{key}:sent:*", count=1000))


def add_events(engine: Engine, as_of: datetime, n: int) -> list[dict[str, Any]]:
    """`n` ml:new_prediction events in one transaction; returns their `data`."""
    payloads = [new_prediction(i) for i in range(n)]
    with transaction(engine) as session:
        enqueue_many(session, payloads, as_of)
    return [p.to_data() for p in payloads]


def outbox_ids(engine: Engine) -> list[str]:
    """Event ids in the order they were written."""
    with engine.connect() as conn:
        return [str(i) for i in conn.scalars(select(EventOutbox.id).order_by(EventOutbox.seq))]


def test_relay_publishes_on_channels_and_stream_in_order(
    engine: Engine, client: redis.Redis, stream: str, as_of: datetime
) -> None:
    for channel in ("ml:training_started", "ml:training_completed", "ml:model_deployed"):
        with transaction(engine) as session:
            enqueue(session, sample_payload(channel, 7), as_of)
    predictions = add_events(engine, as_of, 3)
    expected = outbox_ids(engine)

    received: list[Event] = []
    done = threading.Event()
    listener = threading.Thread(
        target=subscribe,
        args=(client, None, received.append),
        kwargs={"stop": done.is_set, "poll_timeout": 0.05},
    )
    listener.start()
    try:
        wait_for(lambda: dict(client.pubsub_numsub("ml:model_deployed"))[b"ml:model_deployed"] > 0)
        report = relay_events(engine, client, now=lambda: as_of, stream=stream, batch_size=4)
        assert (report.published, report.pending, report.batches, report.ok) == (6, 0, 2, True)
        wait_for(lambda: {e.id for e in received} >= set(expected))
    finally:
        done.set()
        listener.join(timeout=5)

    mine = [e for e in received if e.id in set(expected)]
    assert [e.id for e in mine] == expected
    assert [e.channel for e in mine[:3]] == [
        "ml:training_started",
        "ml:training_completed",
        "ml:model_deployed",
    ]
    assert mine[2].payload == model_deployed(7) and mine[2].timestamp == as_of.isoformat()
    assert all(e.schema_version == type(e.payload).schema_version for e in mine)

    entries = client.xrange(stream)
    assert [fields[b"id"].decode() for _, fields in entries] == expected
    assert set(entries[0][1]) == {b"id", b"channel", b"payload"}
    assert json.loads(entries[0][1][b"payload"])["schema_version"] == 1
    events, _ = read_stream(client, stream=stream)
    assert [e.id for e in events] == expected
    assert [e.data for e in events[3:]] == predictions
    assert [e.payload for e in events[:3]] == [
        sample_payload(c, 7)
        for c in ("ml:training_started", "ml:training_completed", "ml:model_deployed")
    ]

    with engine.connect() as conn:
        rows = conn.execute(select(EventOutbox.published_at, EventOutbox.attempts)).all()
    assert rows == [(as_of, 1)] * 6
    assert relay_events(engine, client, now=lambda: as_of, stream=stream).published == 0


def test_event_waits_out_a_redis_outage_then_arrives_once(
    engine: Engine,
    client: redis.Redis,
    stream: str,
    proxy: CuttableProxy,
    behind_proxy: redis.Redis,
    as_of: datetime,
) -> None:
    consumer = StreamConsumer(client, stream=stream)  # listening from now on
    proxy.cut()

    # The state change itself does not need Redis: it commits with its event.
    signals = pd.DataFrame(
        {
            "pair": ["EUR/USD"],
            "timeframe": ["1h"],
            "signal": ["buy"],
            "confidence": [0.7],
            "entry_price": [1.1],
            "created_at": [as_of],
            "model_version": ["v1"],
        }
    )
    with transaction(engine) as session:
        (signal_id,) = record_signals(session, signals, as_of)
    predictions = add_events(engine, as_of, 3)  # more changes while Redis is away
    for _ in range(2):
        report = relay_events(engine, behind_proxy, now=lambda: as_of, stream=stream)
        assert (report.published, report.pending, report.ok) == (0, 4, False)
        assert report.error is not None and "ConnectionError" in report.error
    status = outbox_status(engine)
    assert (status.pending, status.max_attempts) == (4, 2)
    assert status.last_error is not None and "ConnectionError" in status.last_error
    assert consumer.poll() == []

    proxy.restore()
    report = relay_events(engine, behind_proxy, now=lambda: as_of, stream=stream)
    assert (report.published, report.pending, report.ok) == (4, 0, True)
    relay_events(engine, behind_proxy, now=lambda: as_of, stream=stream)  # nothing left to send
    got = consumer.poll(block_ms=1000)
    assert [e.id for e in got] == outbox_ids(engine)  # each once, in the order written
    assert got[0].payload_as(NewPrediction).signal_id == signal_id
    assert [e.data for e in got[1:]] == predictions
    assert consumer.duplicates == 0 and client.xlen(stream) == 4


def skip_fsync(engine: Engine) -> None:
    """Commits without waiting for the disk: this test is about the Redis connection, and a
    thousand fsyncs would only make it slow."""
    engine.dispose()
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA synchronous=NORMAL"))
        return
    with engine.begin() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{engine.url.database}" SET synchronous_commit = off')
    engine.dispose()


def test_no_event_is_lost_across_1000_changes_with_the_connection_cut_at_random(
    engine: Engine,
    client: redis.Redis,
    stream: str,
    proxy: CuttableProxy,
    behind_proxy: redis.Redis,
    as_of: datetime,
) -> None:
    skip_fsync(engine)
    rng = random.Random(20261124)
    consumer = StreamConsumer(client, stream=stream, from_start=True)
    delivered: list[Event] = []
    written: list[EventPayload] = []
    failures = 0

    def relay() -> None:
        nonlocal failures
        report = relay_events(
            engine, behind_proxy, now=lambda: as_of, stream=stream, batch_size=rng.choice([5, 20])
        )
        failures += report.error is not None
        delivered.extend(consumer.poll(count=10_000))

    for i in range(1000):
        written.append(sample_payload(CHANNELS[i % len(CHANNELS)], i))
        with transaction(engine) as session:  # one state change, one transaction
            enqueue(session, written[-1], as_of)
        roll = rng.random()
        if roll < 0.03:
            proxy.cut()  # an outage, until a later restore
        elif roll < 0.10:
            proxy.restore()
            proxy.cut_after(rng.randrange(0, 3000))  # in the middle of a pipeline or its replies
        elif roll < 0.20:
            proxy.restore()
        if rng.random() < 0.15:
            relay()

    proxy.restore()
    for _ in range(5):
        if count_pending(engine) == 0:
            break
        relay()
    delivered.extend(consumer.poll(count=10_000))

    assert count_pending(engine) == 0
    assert [e.id for e in delivered] == outbox_ids(engine)  # each once, in the order written
    assert [e.payload for e in delivered] == written
    # The cuts really happened and batches were offered again, yet Redis took each event once:
    # the stream holds 1000 entries and the consumer had no repeat to drop.
    assert proxy.cuts > 10 and failures > 10
    with engine.connect() as conn:
        assert conn.scalar(select(EventOutbox.attempts).order_by(EventOutbox.attempts.desc())) > 1
    assert client.xlen(stream) == 1000 and consumer.duplicates == 0


def test_a_batch_offered_again_reaches_redis_once(
    engine: Engine, client: redis.Redis, stream: str, as_of: datetime
) -> None:
    # Redis took the batch but the mark was lost (the database dropped before the commit):
    # the next run offers the same events again, and neither channel nor stream repeats them.
    add_events(engine, as_of, 3)
    listener = client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe("ml:new_prediction")
    assert relay_events(engine, client, now=lambda: as_of, stream=stream).published == 3
    with transaction(engine) as session:
        session.execute(update(EventOutbox).values(published_at=None))
    assert relay_events(engine, client, now=lambda: as_of, stream=stream).published == 3
    assert client.xlen(stream) == 3
    # A marker published last: Redis delivers a channel's messages in order, so once it is
    # heard every event published before it has been heard too.
    marker = f"end-{uuid.uuid4().hex}"
    client.publish("ml:new_prediction", json.dumps({"id": marker}))
    heard: list[str] = []
    deadline = time.monotonic() + 30
    while marker not in heard and time.monotonic() < deadline:
        message = listener.get_message(timeout=1.0)
        if message is not None:
            heard.append(json.loads(message["data"])["id"])
    listener.close()
    ours = outbox_ids(engine)
    assert marker in heard and [i for i in heard if i in ours] == ours


def test_two_relays_at_once_never_publish_the_same_event(
    engine: Engine, client: redis.Redis, stream: str, as_of: datetime
) -> None:
    add_events(engine, as_of, 600)
    start = threading.Barrier(3)

    def run() -> None:
        own = redis_client(REDIS_URL)
        start.wait()
        relay_events(engine, own, now=lambda: as_of, stream=stream, batch_size=50)
        own.close()

    relays = [threading.Thread(target=run) for _ in range(3)]
    for t in relays:
        t.start()
    for t in relays:
        t.join(timeout=30)
    relay_events(engine, client, now=lambda: as_of, stream=stream)  # any a busy relay left
    events, _ = read_stream(client, stream=stream, count=10_000)
    assert [e.id for e in events] == outbox_ids(engine)


def test_without_redis_configured_events_wait(engine: Engine, as_of: datetime) -> None:
    add_events(engine, as_of, 3)
    report = relay_outbox(engine, None, now=lambda: as_of)
    assert (report.configured, report.published, report.pending, report.ok) == (False, 0, 3, False)
    assert outbox_status(engine).max_attempts == 0


def test_a_redis_command_error_keeps_the_batch_pending(
    engine: Engine, client: redis.Redis, stream: str, as_of: datetime
) -> None:
    client.set(stream, "not a stream")  # XADD fails with WRONGTYPE; PUBLISH succeeds
    add_events(engine, as_of, 2)
    report = relay_events(engine, client, now=lambda: as_of, stream=stream)
    assert (report.published, report.pending) == (0, 2)
    assert report.error is not None and "WRONGTYPE" in report.error
    client.delete(stream)
    assert relay_events(engine, client, now=lambda: as_of, stream=stream).published == 2


def test_a_row_written_before_versions_were_recorded_goes_out_as_version_1(
    engine: Engine, client: redis.Redis, stream: str, as_of: datetime
) -> None:
    with transaction(engine) as session:
        enqueue(session, model_deployed(), as_of)
    with engine.begin() as conn:  # as the outbox kept it before schema_version existed
        (row,) = conn.execute(select(EventOutbox.id, EventOutbox.payload)).all()
        legacy = {k: v for k, v in row.payload.items() if k != "schema_version"}
        conn.execute(update(EventOutbox).where(EventOutbox.id == row.id).values(payload=legacy))
    assert relay_events(engine, client, now=lambda: as_of, stream=stream).published == 1
    (event,), _ = read_stream(client, stream=stream)
    assert (event.id, event.schema_version) == (str(row.id), 1)
    assert event.payload == model_deployed()
