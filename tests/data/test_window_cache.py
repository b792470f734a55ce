"""The serving window cache on real databases: one question per burst, never a stale answer."""

from __future__ import annotations

import re
import threading
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
    once share a few questions (two or three) instead of twenty pooled connections, and all
    get the window the questions found."""
    start = T0 - timedelta(hours=HISTORY)
    import_frame(engine, trending_candles(str(start.date()), HISTORY), "EUR/USD", "1h", T0,
                 source="test")  # fmt: skip
    now = T0 + timedelta(hours=3)
    probes: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if PROBE.match(statement):
            probes.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        cache = WindowCache(engine)
        first = cache.get("EUR/USD", "1h", 8, now)
        assert len(probes) == 1
        assert cache.get("EUR/USD", "1h", 8, now) is first  # asked again: nothing newer
        assert len(probes) == 2

        probes.clear()
        burst = 20
        barrier = threading.Barrier(burst)

        def ask(_: int) -> Any:
            barrier.wait()
            return cache.get("EUR/USD", "1h", 8, now)

        with ThreadPoolExecutor(max_workers=burst) as pool:
            windows = list(pool.map(ask, range(burst)))
        assert all(w is first for w in windows)
        # The first asks; those that arrived before it began wait and take its answer, those
        # that arrived a hair after it began share the next one.
        assert 1 <= len(probes) <= burst // 4, len(probes)  # 2 or 3 here; 20 before sharing
    finally:
        event.remove(engine, "before_cursor_execute", count)
