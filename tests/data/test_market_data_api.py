"""Candles pushed over HTTP land exactly like an import: counts that add up, bad rows
quarantined with their reason, nothing stored twice, one event; and the next prediction
uses them, without a restart, even when the one before was answered on a late series."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from aifx_ml.db.models import DataQuarantine, MarketData
from aifx_ml.events.schemas import NewMarketData
from tests.conftest import wait_for
from tests.event_payloads import announced
from tests.memory_registry import T0, TOKEN, World, serving_app, serving_world

pytestmark = pytest.mark.integration
HISTORY = 24 * 14
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def world(engine: Engine) -> World:
    """Two weeks of candles up to T0 and a Production version."""
    return serving_world(engine, HISTORY)


@pytest.fixture
def api(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    clock = [T0 + timedelta(minutes=30)]
    with TestClient(serving_app(world, tmp_path, monkeypatch, now=lambda: clock[0])) as client:
        client.clock = clock  # type: ignore[attr-defined]
        yield client


def candle(hour: int, price: float, **changes: Any) -> dict[str, Any]:
    ts = (T0 + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"timestamp": ts, "open": price, "high": price + 0.001, "low": price - 0.001,
            "close": price, "volume": 10, **changes}  # fmt: skip


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def test_pushed_candles_land_like_an_import_and_the_next_prediction_uses_them(
    world: World, api: TestClient
) -> None:
    before = count(world.engine, MarketData)
    api.clock[0] = T0 + timedelta(hours=3, minutes=5)  # type: ignore[attr-defined]
    body = {
        "pair": "EUR/USD",
        "timeframe": "1h",
        "source": "feed-1",
        "candles": [
            candle(0, 1.31),
            candle(1, 1.32),
            candle(2, 1.33, open="1.33", close="1.33"),  # text, like a CSV cell
            candle(2, 1.33),  # the same candle again in the push: a duplicate
            candle(3, 1.2, high=1.1),  # high below close: quarantined
            candle(4, 1.3, close="x"),  # not a number: quarantined
        ],
    }
    # The feed is 3 candles late: this answer is on the last stored one, and the service keeps
    # it in memory until candles for the series are stored (on PostgreSQL, where it hears
    # every commit that stores some).
    changes = api.app.state.services.predictions.changes  # type: ignore[attr-defined]
    hears = world.engine.dialect.name == "postgresql"
    if hears:
        wait_for(lambda: changes.token("EUR/USD", "1h") is not None)
    late = api.post("/api/v1/predict", json={"pair": "EUR/USD", "timeframe": "1h"}).json()
    assert late["entry_price"] != pytest.approx(1.33)
    heard = changes.token("EUR/USD", "1h")
    assert api.post("/api/v1/market-data", json=body).status_code == 401
    pushed = api.post("/api/v1/market-data", json=body, headers=AUTH)
    if hears:  # heard by the time the push is answered
        assert changes.token("EUR/USD", "1h") != heard
    assert pushed.status_code == 200, pushed.text
    got = pushed.json()
    assert (got["read"], got["accepted"], got["duplicates"], got["quarantined"]) == (6, 3, 1, 2)
    assert got["accepted"] + got["duplicates"] + got["quarantined"] == got["read"]
    assert count(world.engine, MarketData) == before + 3
    assert count(world.engine, DataQuarantine) == 2
    (event,) = [e for e in announced(world.engine, NewMarketData) if e.source == "feed-1"]
    assert (event.inserted, event.updated) == (3, 0)

    # The next prediction reads the pushed candles: its entry price is the last one's close.
    answer = api.post("/api/v1/predict", json={"pair": "EUR/USD", "timeframe": "1h"}).json()
    assert answer["entry_price"] == pytest.approx(1.33)

    # Pushing the same again stores nothing twice.
    again = api.post("/api/v1/market-data", json=body, headers=AUTH).json()
    assert (again["accepted"], again["duplicates"]) == (0, 4)
    assert count(world.engine, MarketData) == before + 3


def test_a_push_that_is_not_candles_is_refused_whole(api: TestClient) -> None:
    bad = {"pair": "EURUSD", "timeframe": "1h", "candles": [candle(0, 1.3)]}
    assert api.post("/api/v1/market-data", json=bad, headers=AUTH).status_code == 422
    empty = {"pair": "EUR/USD", "timeframe": "1h", "candles": []}
    assert api.post("/api/v1/market-data", json=empty, headers=AUTH).status_code == 422
    wrong_tf = {"pair": "EUR/USD", "timeframe": "2h", "candles": [candle(0, 1.3)]}
    refused = api.post("/api/v1/market-data", json=wrong_tf, headers=AUTH)
    assert refused.status_code == 422 and "2h" in refused.text
