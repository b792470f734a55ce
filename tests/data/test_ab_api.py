"""The A/B test API over HTTP (FastAPI's test client) on real databases and a real MLflow
store: auth, validation of every field, unknown ids, a second active test, and metrics
that equal numbers computed by hand."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from aifx_ml.abtest.store import TestPlan, describe, get_test
from aifx_ml.cli.serve import build_app
from aifx_ml.config import load_settings
from aifx_ml.db.models import EventOutbox, ModelVersion, TradingSignal
from aifx_ml.events.schemas import ABTestCompleted, ABTestCreated, ABTestPlan, ModelDeployed
from tests.conftest import TRAIN_AS_OF
from tests.event_payloads import announced
from tests.registry_world import World, client_for, copy_world

pytestmark = pytest.mark.integration
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = TRAIN_AS_OF + timedelta(days=2)
GOOD = {
    "test_name": "v2 vs v1",
    "model_a_version": "lstm-v1",
    "model_b_version": "lstm-v2",
    "traffic_split": 0.2,
}


@pytest.fixture
def api(
    world: World, engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    uri = copy_world(world, engine, tmp_path)
    for name, value in {
        "AIFX_DATABASE_URL": db_url,
        "AIFX_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": uri,
        "AIFX_API_TOKEN": TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    with engine.begin() as conn:  # v1 serves; v2 and v3 wait in Staging
        conn.execute(
            ModelVersion.__table__.update()
            .where(ModelVersion.version == "lstm-v1")
            .values(status="production")
        )
    app = build_app(load_settings(), engine=engine, now=lambda: NOW, refresh_seconds=0)
    app.state.mlflow_uri = uri
    with TestClient(app) as client:
        yield client


def test_writes_need_the_token(api: TestClient) -> None:
    missing = api.post("/api/v1/ml/ab-tests", json=GOOD)
    assert missing.status_code == 401 and "missing bearer token" in missing.json()["detail"]
    wrong = api.post("/api/v1/ml/ab-tests", json=GOOD, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["detail"] == "invalid bearer token"
    assert api.get("/api/v1/ml/ab-tests").json() == {"tests": []}  # reads are open
    for path in ("complete", "cancel", "evaluate"):
        assert api.post(f"/api/v1/ml/ab-tests/{uuid.uuid4()}/{path}", json={}).status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"test_name": ""}, "test_name"),
        ({"test_name": "x" * 129}, "test_name"),
        ({"model_a_version": ""}, "model_a_version"),
        ({"model_b_version": 7}, "model_b_version"),
        ({"traffic_split": 0}, "traffic_split"),
        ({"traffic_split": 1}, "traffic_split"),
        ({"traffic_split": -0.2}, "traffic_split"),
        ({"traffic_split": "half"}, "traffic_split"),
        ({"plan": {"alpha": 1.5}}, "alpha"),
        ({"plan": {"min_decided_per_arm": 0}}, "min_decided_per_arm"),
        ({"plan": {"max_days": 0}}, "max_days"),
    ],
)
def test_every_field_is_validated(api: TestClient, change: dict[str, Any], field: str) -> None:
    response = api.post("/api/v1/ml/ab-tests", json={**GOOD, **change}, headers=AUTH)
    assert response.status_code == 422
    assert field in str(response.json()["detail"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_b_version": "lstm-v9"}, "unknown model version 'lstm-v9'"),
        ({"model_b_version": "lstm-v1"}, "must differ"),
    ],
)
def test_versions_are_checked(api: TestClient, change: dict[str, Any], message: str) -> None:
    response = api.post("/api/v1/ml/ab-tests", json={**GOOD, **change}, headers=AUTH)
    assert response.status_code == 422 and message in response.json()["detail"]


def test_create_list_second_active_refused_complete_cancel(api: TestClient, engine: Engine) -> None:
    created = api.post("/api/v1/ml/ab-tests", json=GOOD, headers=AUTH)
    assert created.status_code == 201
    test = created.json()
    assert (test["status"], test["traffic_split"], test["model_type"]) == ("active", 0.2, "lstm")
    aliases = client_for(api.app.state.mlflow_uri).get_registered_model("aifx-lstm").aliases  # type: ignore[attr-defined]
    assert str(aliases["challenger"]) == "2"

    second = {**GOOD, "model_b_version": "lstm-v3", "test_name": "v3 vs v1"}
    conflict = api.post("/api/v1/ml/ab-tests", json=second, headers=AUTH)
    assert conflict.status_code == 409 and "already active for lstm" in conflict.json()["detail"]

    listed = api.get("/api/v1/ml/ab-tests", params={"status": "active"}).json()["tests"]
    assert [t["id"] for t in listed] == [test["id"]]
    assert api.get("/api/v1/ml/ab-tests", params={"status": "bogus"}).status_code == 422

    bad_winner = api.post(
        f"/api/v1/ml/ab-tests/{test['id']}/complete", json={"winner": "lstm-v3"}, headers=AUTH
    )
    assert bad_winner.status_code == 422 and "invalid winner" in bad_winner.json()["detail"]
    done = api.post(
        f"/api/v1/ml/ab-tests/{test['id']}/complete", json={"winner": "lstm-v2"}, headers=AUTH
    )
    assert done.status_code == 200 and done.json()["winner"] == "lstm-v2"
    with engine.connect() as conn:
        status = dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())
        channels = conn.execute(select(EventOutbox.channel)).scalars().all()
    assert (status["lstm-v1"], status["lstm-v2"]) == ("archived", "production")
    assert {"ml:ab_test_created", "ml:ab_test_completed", "ml:model_deployed"} <= set(channels)
    (opened,) = announced(engine, ABTestCreated)
    (closed,) = announced(engine, ABTestCompleted)
    assert (opened.id, opened.status, opened.winner) == (uuid.UUID(test["id"]), "active", None)
    assert (closed.id, closed.status, closed.winner) == (opened.id, "completed", "lstm-v2")
    assert closed.config == opened.config == ABTestPlan.model_validate(TestPlan().as_dict())
    # The event says what the API says about the test, field for field.
    assert closed.to_data() == describe(get_test(engine, test["id"]))
    (deployed,) = announced(engine, ModelDeployed)
    assert (deployed.version, deployed.previous_version) == ("lstm-v2", "lstm-v1")
    assert deployed.ab_test_id == opened.id
    again = api.post(f"/api/v1/ml/ab-tests/{test['id']}/cancel", json={}, headers=AUTH)
    assert again.status_code == 409 and "already completed" in again.json()["detail"]

    # With the first test over, another may start, and be cancelled: Production stays.
    third = {**GOOD, "model_a_version": "lstm-v2", "model_b_version": "lstm-v3"}
    started = api.post("/api/v1/ml/ab-tests", json=third, headers=AUTH).json()
    cancelled = api.post(
        f"/api/v1/ml/ab-tests/{started['id']}/cancel", json={"reason": "bad idea"}, headers=AUTH
    ).json()
    assert (cancelled["status"], cancelled["ended_reason"]) == ("cancelled", "bad idea")


def test_unknown_ids_are_404(api: TestClient) -> None:
    missing = uuid.uuid4()
    for method, path in (
        ("get", f"/api/v1/ml/ab-tests/{missing}"),
        ("get", f"/api/v1/ml/ab-tests/{missing}/metrics"),
        ("post", f"/api/v1/ml/ab-tests/{missing}/complete"),
        ("post", f"/api/v1/ml/ab-tests/{missing}/cancel"),
    ):
        response = getattr(api, method)(
            path, headers=AUTH, **({"json": {}} if method == "post" else {})
        )
        assert response.status_code == 404, path
        assert str(missing) in response.json()["detail"]
    assert api.get("/api/v1/ml/ab-tests/not-a-uuid").status_code == 422


def test_metrics_equal_hand_computed_numbers(api: TestClient, engine: Engine) -> None:
    test = api.post("/api/v1/ml/ab-tests", json=GOOD, headers=AUTH).json()
    test_id = uuid.UUID(test["id"])
    # A: 3 wins, 1 loss, 1 breakeven, 1 pending; B: 1 win, 1 loss. Two pairs, one day.
    rows = [
        ("lstm-v1", "EUR/USD", "win", 1.0),
        ("lstm-v1", "EUR/USD", "win", 0.8),
        ("lstm-v1", "GBP/USD", "win", 0.6),
        ("lstm-v1", "GBP/USD", "loss", -0.6),
        ("lstm-v1", "EUR/USD", "breakeven", 0.2),
        ("lstm-v1", "EUR/USD", "pending", None),
        ("lstm-v2", "EUR/USD", "win", 0.7),
        ("lstm-v2", "GBP/USD", "loss", -0.9),
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(TradingSignal),
            [
                {
                    "id": uuid.uuid4(),
                    "pair": pair,
                    "timeframe": "1h",
                    "signal": "buy",
                    "confidence": 0.6,
                    "entry_price": 1.1,
                    "created_at": NOW - timedelta(hours=6),
                    "actual_outcome": outcome,
                    "actual_pnl_percent": pnl,
                    "model_version": version,
                    "ab_test_id": test_id,
                }
                for version, pair, outcome, pnl in rows
            ],
        )
    body = api.get(f"/api/v1/ml/ab-tests/{test_id}/metrics").json()
    a, b = body["arms"]["a"], body["arms"]["b"]
    assert (a["signals"], a["pending"], a["decided"], a["wins"], a["losses"], a["breakevens"]) == (
        6,
        1,
        4,
        3,
        1,
        1,
    )
    assert (b["signals"], b["decided"], b["wins"], b["losses"]) == (2, 2, 1, 1)
    assert a["win_rate"] == pytest.approx(0.75) and b["win_rate"] == pytest.approx(0.5)
    assert a["mean_pnl"] == pytest.approx((1.0 + 0.8 + 0.6 - 0.6 + 0.2) / 5)
    assert b["mean_pnl"] == pytest.approx((0.7 - 0.9) / 2)
    low, high = a["win_rate_ci"]
    assert 0 <= low <= 0.75 <= high <= 1
    decision = body["decision"]
    assert decision["theta_hat"] == pytest.approx(0.5 - 0.75)
    assert decision["status"] == "continue" and "waiting for 200 decided" in decision["reason"]
    assert body["variants"] == {"a": "lstm-v1", "b": "lstm-v2"}
