"""End to end: two registered versions, an A/B test, predictions through the HTTP API while
candles arrive, labels, the hourly evaluation flow (run by Prefect) promoting the better arm —
and the running service answering with it, without a restart."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from aifx_ml.cli.serve import build_app
from aifx_ml.config import load_settings
from aifx_ml.data.importer import import_frame
from aifx_ml.db.models import Alert, ModelABTest, ModelVersion, TradingSignal
from aifx_ml.labeling.store import label_pending
from flows.ab_evaluation import ab_evaluation_flow
from tests.serving_helpers import register_constant, trending_candles

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
TOKEN = {"Authorization": "Bearer e2e"}
PAIRS = {"EUR/USD": 1, "GBP/USD": 2}


def test_a_better_challenger_wins_live_and_serves_without_a_restart(
    prefect_api: None,
    engine: Engine,
    db_url: str,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "AIFX_DATABASE_URL": db_url,
        "AIFX_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "AIFX_API_TOKEN": "e2e",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    # Four weeks of a steadily rising market, up to T0.
    history = 24 * 28
    frames = {
        pair: trending_candles(str((T0 - timedelta(hours=history)).date()), history + 48, seed=s)
        for pair, s in PAIRS.items()
    }
    for pair, frame in frames.items():
        import_frame(engine, frame[frame["timestamp"] < T0], pair, "1h", T0, source="e2e")

    artifacts = str(tmp_path / "artifacts")
    seller = register_constant(engine, mlflow_uri, artifacts, 0.2, T0, status="production")
    buyer = register_constant(engine, mlflow_uri, artifacts, 0.8, T0)
    clock = [T0]
    app = build_app(load_settings(), engine=engine, now=lambda: clock[0], refresh_seconds=0)

    with TestClient(app) as api:
        assert (
            api.post("/api/v1/predict", json={"pair": "EUR/USD", "timeframe": "1h"}).json()[
                "model_version"
            ]
            == seller
        )
        created = api.post(
            "/api/v1/ml/ab-tests",
            headers=TOKEN,
            json={
                "test_name": "buyer vs seller",
                "model_a_version": seller,
                "model_b_version": buyer,
                "traffic_split": 0.5,
                "plan": {"min_decided_per_arm": 40, "max_decided_per_arm": 2000},
            },
        )
        assert created.status_code == 201
        test_id = created.json()["id"]

        # Twelve hours of trading: each hour the new candle arrives, requests come in from
        # fresh routing keys, and signals whose horizon has passed are labeled.
        for hour in range(1, 13):
            clock[0] = T0 + timedelta(hours=hour)
            for pair, frame in frames.items():
                arrived = frame[frame["timestamp"] == clock[0] - timedelta(hours=1)]
                import_frame(engine, arrived, pair, "1h", clock[0], source="e2e")
            batch = [
                {"pair": pair, "timeframe": "1h", "routing_key": uuid.uuid4().hex}
                for pair in PAIRS
                for _ in range(8)
            ]
            answers = api.post("/api/v1/predict/batch", json={"requests": batch}).json()
            assert {a["ab_test_id"] for a in answers["predictions"]} == {test_id}
            label_pending(engine, clock[0])

    with engine.connect() as conn:
        by_arm = dict(
            conn.execute(
                select(TradingSignal.model_version, func.count())
                .where(TradingSignal.ab_test_id == uuid.UUID(test_id))
                .group_by(TradingSignal.model_version)
            ).all()
        )
        outcomes = dict(
            conn.execute(
                select(TradingSignal.signal, TradingSignal.actual_outcome)
                .where(TradingSignal.actual_outcome != "pending")
                .distinct()
            ).all()
        )
    assert set(by_arm) == {seller, buyer} and sum(by_arm.values()) == 12 * 16
    assert outcomes == {"buy": "win", "sell": "loss"}  # the market rose: the buyer was right

    # The hourly evaluation flow, through Prefect: B has won; it is promoted.
    result = ab_evaluation_flow(as_of=clock[0])
    assert result[test_id]["status"] == "winner", result
    with engine.connect() as conn:
        test = conn.execute(select(ModelABTest).where(ModelABTest.id == uuid.UUID(test_id))).one()
        status = dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())
    assert (test.status, test.winner) == ("completed", buyer)
    assert (status[seller], status[buyer]) == ("archived", "production")
    with engine.connect() as conn:
        alerts = conn.execute(select(Alert.kind, Alert.title)).all()
    assert [kind for kind, _ in alerts] == ["ab_decided"]  # a person hears of it
    assert buyer in alerts[0].title

    # The same app, never restarted, now answers with the winner and no test.
    with TestClient(app) as api:
        after = api.post("/api/v1/predict", json={"pair": "GBP/USD", "timeframe": "1h"}).json()
    assert (after["model_version"], after["ab_test_id"], after["signal"]) == (buyer, None, "buy")
