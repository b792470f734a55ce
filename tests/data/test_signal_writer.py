"""The signal writer on real databases: a row the database refuses costs only itself, an
outage (refused or blackholed) keeps every row (in memory, then in a spill file), and a spill
file is replayed once, even after a crash in the middle of a replay."""

from __future__ import annotations

import fcntl
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from aifx_ml.db.engine import make_engine, upgrade
from aifx_ml.db.models import TradingSignal
from aifx_ml.events.schemas import NewPrediction
from aifx_ml.serving import signal_writer
from aifx_ml.serving.signal_writer import RejectedRow, SignalWriter
from tests.conftest import _postgres_database
from tests.event_payloads import announced
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def signal_row(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "pair": "EUR/USD",
        "timeframe": "1h",
        "signal": "buy",
        "confidence": 0.6,
        "probability": 0.8,
        "entry_price": 1.1 + i / 1000,
        "created_at": T0 + timedelta(seconds=i),
        "actual_outcome": "pending",
        "model_version": None,
        "ab_test_id": None,
        "routing_key": f"acct-{i}",
        "verified": True,
        **changes,
    }


def stored_ids(engine: Engine) -> list[uuid.UUID]:
    with engine.connect() as conn:
        return list(conn.scalars(select(TradingSignal.id)))


def announced_ids(engine: Engine) -> list[uuid.UUID]:
    return [e.signal_id for e in announced(engine, NewPrediction)]


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_row_the_database_refuses_costs_only_itself(engine: Engine, tmp_path: Path) -> None:
    reported: list[RejectedRow] = []
    writer = SignalWriter(engine, spill_dir=tmp_path, on_rejected=reported.extend, linger=0.2)
    good = [signal_row(i) for i in range(60)]
    # A foreign key to no A/B test: refused by SQLite and PostgreSQL alike, at commit.
    poison = [signal_row(100, ab_test_id=uuid.uuid4())]
    if engine.dialect.name == "postgresql":
        poison.append(signal_row(101, routing_key="acct\x00101"))  # PostgreSQL refuses NUL
    try:
        writer.enqueue(good[:30] + poison + good[30:])  # one round, the poison in the middle
        assert writer.flush(timeout=30)
        status = writer.status()
    finally:
        writer.close()
    assert sorted(map(str, stored_ids(engine))) == sorted(str(r["id"]) for r in good)
    assert sorted(map(str, announced_ids(engine))) == sorted(str(r["id"]) for r in good)
    assert (status.rejected, status.committed, status.waiting) == (len(poison), len(good), 0)
    assert [r.signal_id for r in reported] == [r["id"] for r in poison]
    kept = [orjson.loads(line) for line in (tmp_path / "rejected.jsonl").read_bytes().splitlines()]
    assert [k["row"]["id"] for k in kept] == [str(r["id"]) for r in poison]
    assert all(k["error"] for k in kept)


def test_a_spill_file_is_replayed_once_even_after_a_crash_mid_replay(
    engine: Engine, tmp_path: Path
) -> None:
    first = SignalWriter(engine, spill_dir=tmp_path)
    already = [signal_row(i) for i in range(5)]
    first.write_now(already)  # stored by a replay that was then killed before removing its file
    first.close()
    fresh = [signal_row(i) for i in range(5, 12)]
    lines = b"".join(orjson.dumps(r) + b"\n" for r in already + fresh)
    (tmp_path / "spill-crashed.jsonl").write_bytes(lines + b'{"id": "cut sh')  # killed mid-line
    writer = SignalWriter(engine, spill_dir=tmp_path)
    try:
        assert writer.status().spilled == 13  # counted at start, replayed on the first round
        assert writer.flush(timeout=30)
        assert writer.status().spilled == 0
    finally:
        writer.close()
    every = [str(r["id"]) for r in already + fresh]
    assert sorted(map(str, stored_ids(engine))) == sorted(every)
    assert sorted(map(str, announced_ids(engine))) == sorted(every)  # one event each
    assert not list(tmp_path.glob("spill-*.jsonl"))


def test_a_spill_file_being_made_is_left_alone_by_a_replayer(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's writer replays the spill folder at the worst moment: while this
    one has just made its spill file and not yet locked it. No row may be lost."""
    other = SignalWriter(engine, spill_dir=tmp_path)
    real_flock = fcntl.flock
    replays: list[list[str]] = []

    def flock_after_a_replay(handle: Any, operation: int) -> None:
        if operation == fcntl.LOCK_EX:  # the spilling writer locking its new file
            replays.append(sorted(p.name for p in tmp_path.glob(signal_writer.SPILL_GLOB)))
            other._replay()  # noqa: SLF001  (the moment a replayer could strike)
        real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_replay)
    writer = SignalWriter(engine, spill_dir=tmp_path, max_buffer=0)  # every row spills
    rows = [signal_row(i) for i in range(7)]
    try:
        writer.enqueue(rows)
        monkeypatch.setattr(fcntl, "flock", real_flock)
        assert writer.status().spilled == len(rows)
        assert writer.flush(timeout=30)
    finally:
        writer.close()
        other.close()
    assert sorted(map(str, stored_ids(engine))) == sorted(str(r["id"]) for r in rows)
    assert replays == [[]]  # the replayer saw no file to take


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.mark.parametrize("outage", ["refused", "blackholed"])
def test_an_outage_keeps_every_row_in_memory_then_on_disk(
    outage: str, pg_url: str, tmp_path: Path
) -> None:
    direct = make_url(pg_url)
    upgrade(make_engine(pg_url))
    with CuttableProxy((direct.host or "127.0.0.1", direct.port or 5432)) as pg:
        url = direct.set(host="127.0.0.1", port=pg.port).render_as_string(hide_password=False)
        engine = make_engine(url, connect_args={"connect_timeout": 1})
        writer = SignalWriter(
            engine, spill_dir=tmp_path, max_buffer=10, first_backoff=0.05, max_backoff=0.5
        )
        try:
            rows = [signal_row(-1)]
            writer.write_now(rows)  # leaves a pooled connection for the outage to break
            pg.cut() if outage == "refused" else pg.blackhole()
            for start in range(0, 25, 5):
                batch = [signal_row(i) for i in range(start, start + 5)]
                writer.enqueue(batch)
                rows += batch
            if outage == "refused":  # a blackhole holds the writer's query until it lifts
                wait_until(lambda: writer.status().retrying)
            status = writer.status()
            assert (status.waiting, status.spilled) == (10, 15)
            assert len(list(tmp_path.glob("spill-*.jsonl"))) == 1
            pg.restore()
            assert writer.flush(timeout=30)
            assert writer.status().backlog is False
        finally:
            writer.close()
            engine.dispose()
    check = make_engine(pg_url)
    try:
        # Each row once, each announced once: the spilled ones replayed, the others retried.
        assert sorted(map(str, stored_ids(check))) == sorted(str(r["id"]) for r in rows)
        assert sorted(map(str, announced_ids(check))) == sorted(str(r["id"]) for r in rows)
    finally:
        check.dispose()
    assert not list(tmp_path.glob("spill-*.jsonl"))
