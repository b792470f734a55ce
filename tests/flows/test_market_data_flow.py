"""The market-data flow, run by Prefect's own engine against a real database: files dropped
in AIFX_DROP_DIR are imported once and moved out of the way."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from aifx_ml.db.models import MarketData
from aifx_ml.events.schemas import NewMarketData
from flows.market_data import market_data_flow
from tests.conftest import hourly_candles
from tests.event_payloads import announced

pytestmark = pytest.mark.integration


def test_the_flow_imports_dropped_files_once(
    prefect_api: None,
    engine: Engine,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    drop = tmp_path / "drop"
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIFX_DROP_DIR", str(drop))
    monkeypatch.chdir(tmp_path)
    assert market_data_flow() == []  # creates the folder; nothing waits
    hourly_candles("2026-03-02", 12).to_csv(drop / "EURUSD_1h.csv", index=False)
    (drop / "EURUSD_1h.txt").write_text("not candles")

    imported, rejected = sorted(market_data_flow())
    assert imported == "EURUSD_1h.csv: 12 accepted, 0 duplicate, 0 quarantined"
    assert rejected.startswith("EURUSD_1h.txt: rejected (") and "missing column(s)" in rejected
    assert market_data_flow() == []  # moved out: nothing is imported twice
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(MarketData)) == 12
    assert [e.inserted for e in announced(engine, NewMarketData)] == [12]
    assert (drop / "processed" / "EURUSD_1h.csv").exists()
    assert (drop / "rejected" / "EURUSD_1h.txt.error.txt").exists()
