"""The serving window cache on real databases: one question per burst, never a stale answer,
and on PostgreSQL no question at all while nothing was stored for a late series."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
import pytest
from sqlalchemy import Engine, event

from aifx_ml.data.importer import import_frame
from aifx_ml.db.engine import make_engine
from aifx_ml.db.notices import MARKET_DATA_CHANNEL, Listener
from aifx_ml.serving.inputs import SeriesChanges, WindowCache
from tests.conftest import POSTGRES_ADMIN_DSN, wait_for
from tests.serving_helpers import trending_candles

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
HISTORY = 24 * 5
# The probe for the newest candle's open time (stored_window selects more columns).
PROBE = re.compile(r"^SELECT market_data\.timestamp\s+FROM", re.IGNORECASE)


def test_a_burst_for_one_series_shares_one_question(engine: Engine) -> None:
    """The newest stored candle is older than the grid's newest (a late feed): every request
    must ask the database whether a newer one came. One after another, each asks; twenty at
    once share at most two questions (the first, and one for those that arrived after it
    began) instead of twenty pooled connections, and all get the window the questions found."""
    start = T0 - timedelta(hours=HISTORY)
    import_frame(engine, trending_candles(str(start.date()), HISTORY), "EUR/USD", "1h", T0,
                 source="test")  # fmt: skip
    now = T0 + timedelta(hours=3)
    probes: list[str] = []
    burst = 20
    # The cache reads its clock once when a request arrives and once when a question begins.
    # The burst's first question is held until every request of the burst has arrived, so the
    # bound below does not depend on how fast this machine schedules twenty threads.
    clock_reads = 0
    clock_lock = threading.Lock()
    all_arrived = threading.Event()
    holding = threading.Event()

    def monotonic() -> float:
        nonlocal clock_reads
        with clock_lock:
            clock_reads += 1
            if holding.is_set() and clock_reads >= burst + 1:  # 20 arrivals + the first began
                all_arrived.set()
        return time.monotonic()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if PROBE.match(statement):
            probes.append(statement)
            if holding.is_set() and len(probes) == 1:
                assert all_arrived.wait(30), f"only {clock_reads - 1} of {burst} arrived"

    event.listen(engine, "before_cursor_execute", count)
    try:
        cache = WindowCache(engine, monotonic=monotonic)
        first = cache.get("EUR/USD", "1h", 8, now)
        assert len(probes) == 1
        assert cache.get("EUR/USD", "1h", 8, now) is first  # asked again: nothing newer
        assert len(probes) == 2

        probes.clear()
        with clock_lock:
            clock_reads = 0
            holding.set()
        with ThreadPoolExecutor(max_workers=burst) as pool:
            windows = list(pool.map(lambda _: cache.get("EUR/USD", "1h", 8, now), range(burst)))
        assert all(w is first for w in windows)
        # The first asks; the others wait. Those that arrived before its question began take
        # its answer; those that arrived after share the next question: 20 before sharing.
        assert 1 <= len(probes) <= 2, len(probes)
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def probes(pg_engine: Engine) -> Iterator[list[str]]:
    """The newest-candle questions the cache asks the database."""
    asked: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if PROBE.match(statement):
            asked.append(statement)

    event.listen(pg_engine, "before_cursor_execute", count)
    yield asked
    event.remove(pg_engine, "before_cursor_execute", count)


@pytest.fixture
def heard(pg_engine: Engine) -> Iterator[SeriesChanges]:
    """What a listener (its own PostgreSQL connection, as the service's) hears of imports."""
    changes = SeriesChanges()
    listener = Listener(
        pg_engine,
        {MARKET_DATA_CHANNEL: changes.changed},
        on_connect=changes.listening,
        on_disconnect=changes.deaf,
        retry=60.0,  # a test that cuts it sees it deaf until it ends
    ).start()
    wait_for(lambda: changes.token("EUR/USD", "1h") is not None)
    yield changes
    listener.stop()


def elsewhere(engine: Engine, candles: pd.DataFrame, pair: str = "EUR/USD") -> None:
    """An import by another process (its own engine: nothing in this one is told)."""
    other = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        import_frame(other, candles, pair, "1h", T0 + timedelta(days=1), source="elsewhere")
    finally:
        other.dispose()


def history(engine: Engine, heard: SeriesChanges) -> None:
    """EUR/USD 1h up to T0 - 1h, its import heard (so the test's first question comes after)."""
    before = heard.token("EUR/USD", "1h")
    start = T0 - timedelta(hours=HISTORY)
    import_frame(engine, trending_candles(str(start.date()), HISTORY), "EUR/USD", "1h", T0,
                 source="test")  # fmt: skip
    wait_for(lambda: heard.token("EUR/USD", "1h") != before)


def test_a_late_series_is_answered_from_memory_until_an_import_for_it_is_heard(
    pg_engine: Engine, probes: list[str], heard: SeriesChanges
) -> None:
    """The grid's newest candle is 3 hours late. The first request asks; the next ones reuse
    that answer (no question) while nothing is stored for the series and the grid's newest
    candle stays the same, even across an import of another series. An import of the series
    by another process is heard and the next request reads it; so does the next hour."""
    start = T0 - timedelta(hours=HISTORY)
    history(pg_engine, heard)
    ahead = [0.0]  # how far the cache's clock is put forward
    cache = WindowCache(pg_engine, monotonic=lambda: time.monotonic() + ahead[0], changes=heard)
    now = T0 + timedelta(hours=3, minutes=10)
    first = cache.get("EUR/USD", "1h", 8, now)
    assert first.last_open == pd.Timestamp(T0 - timedelta(hours=1))
    for minutes in (11, 30, 59):
        later = now.replace(minute=minutes)
        assert cache.in_memory("EUR/USD", "1h", 8, later) is first
        assert cache.get("EUR/USD", "1h", 8, later) is first
    assert len(probes) == 1

    before = heard.token("GBP/USD", "1h")
    elsewhere(pg_engine, trending_candles(str(start.date()), HISTORY), pair="GBP/USD")
    wait_for(lambda: heard.token("GBP/USD", "1h") != before)
    assert cache.get("EUR/USD", "1h", 8, now) is first
    assert len(probes) == 1

    before = heard.token("EUR/USD", "1h")
    arrived = trending_candles(str(T0.date()), 2)  # T0 and T0 + 1h, by another process
    elsewhere(pg_engine, arrived)
    wait_for(lambda: heard.token("EUR/USD", "1h") != before)
    assert cache.in_memory("EUR/USD", "1h", 8, now) is None
    fresh = cache.get("EUR/USD", "1h", 8, now)
    assert fresh.last_open == pd.Timestamp(T0 + timedelta(hours=1))
    assert len(probes) == 2
    assert cache.get("EUR/USD", "1h", 8, now) is fresh
    assert len(probes) == 2

    next_hour = now + timedelta(hours=1)  # a newer candle could exist now: ask
    assert cache.in_memory("EUR/USD", "1h", 8, next_hour) is None
    assert cache.get("EUR/USD", "1h", 8, next_hour) is fresh
    assert len(probes) == 3

    ahead[0] += 10.0  # heard nothing, yet after recheck_seconds it asks again all the same
    assert cache.in_memory("EUR/USD", "1h", 8, next_hour) is None
    cache.get("EUR/USD", "1h", 8, next_hour)
    assert len(probes) == 4


def test_while_the_listener_is_cut_off_every_late_request_asks(
    pg_engine: Engine, probes: list[str], heard: SeriesChanges
) -> None:
    """What is committed while nobody listens is not heard: then nothing is reused."""
    history(pg_engine, heard)
    cache = WindowCache(pg_engine, changes=heard)
    now = T0 + timedelta(hours=3)
    first = cache.get("EUR/USD", "1h", 8, now)
    assert cache.get("EUR/USD", "1h", 8, now) is first
    assert len(probes) == 1

    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND query LIKE 'LISTEN%%'",
            (pg_engine.url.database,),
        ).fetchall()
    assert cut == [(True,)]
    wait_for(lambda: heard.token("EUR/USD", "1h") is None)
    elsewhere(pg_engine, trending_candles(str(T0.date()), 1))  # nobody hears it
    fresh = cache.get("EUR/USD", "1h", 8, now)
    assert fresh.last_open == pd.Timestamp(T0)
    assert cache.get("EUR/USD", "1h", 8, now) is fresh
    assert len(probes) == 3  # each asked
