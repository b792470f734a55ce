"""Serving fails safe: a version whose files fail their integrity check is never swapped in;
the server keeps answering with the model it holds, health answers 503 "degraded" naming the
version and the reason, and a critical alert is raised once. Versions live in the in-memory
model store over PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from aifx_ml.db.models import Alert
from aifx_ml.serving.inference import ModelServer, ModelUnavailableError
from aifx_ml.serving.predict import PredictRequest, pick
from tests.memory_registry import T0, World, pg, serving_app, world
from tests.serving_helpers import WINDOW, trending_candles

pytestmark = pytest.mark.integration
__all__ = ["pg", "world"]  # fixtures


def test_a_tampered_production_version_is_not_swapped_in(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = world.register(0.7), world.register(0.3)
    world.promote(v1, as_of=T0 - timedelta(hours=2))
    app = serving_app(world, tmp_path, monkeypatch)
    candles = trending_candles("2026-02-20", WINDOW + 60)
    request = PredictRequest(pair="EUR/USD", timeframe="1h", candles=candles)
    with TestClient(app) as client:
        service = app.state.services.predictions
        assert service.predict([request])[0].model_version == v1
        healthy = client.get("/api/v1/monitoring/health").json()
        assert healthy["serving"]["status"] == "ok"
        world.promote(v2, as_of=T0 - timedelta(hours=1))  # its files were sound then
        world.tamper(v2)  # and are not any more
        service.server.invalidate()
        for _ in range(3):  # every request is still answered, by the model in memory
            assert service.predict([request])[0].model_version == v1
        sent = [
            {**row, "timestamp": row["timestamp"].isoformat()}
            for row in candles.to_dict(orient="records")
        ]
        answer = client.post(
            "/api/v1/predict", json={"pair": "EUR/USD", "timeframe": "1h", "candles": sent}
        )
        assert answer.status_code == 200 and answer.json()["model_version"] == v1
        health = client.get("/api/v1/monitoring/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "degraded"
        (refused,) = body["serving"]["refused"]
        assert refused["version"] == v2 and refused["serving_instead"] == v1
        assert "integrity check" in refused["reason"] and v2 in body["serving"]["detail"]
    with world.engine.connect() as conn:
        alerts = conn.execute(select(Alert.alert_key, Alert.kind, Alert.severity)).all()
    assert alerts == [(f"model-refused:{v2}", "model_refused", "critical")]  # raised once


def test_a_server_with_nothing_in_memory_answers_503_not_500(world: World) -> None:
    v1 = world.register()
    world.promote(v1)
    world.tamper(v1)
    server = ModelServer(world.engine, world.store, refresh_seconds=0)
    assignment = server.assignment("lstm")
    assert assignment.production is None and [f.version for f in server.failures()] == [v1]
    with pytest.raises(ModelUnavailableError, match="no lstm model can serve"):
        pick(assignment, "key")
