"""The serving window cache on real databases: one question per burst, never a stale answer."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from aifx_ml.data.importer import import_frame
from aifx_ml.serving.inputs import WindowCache
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
