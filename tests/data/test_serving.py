"""The prediction service over HTTP on real databases and a real MLflow store: what it answers,
what it records, when it refuses to be confident, and swapping models without a restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from aifx_ml.cli.serve import build_app
from aifx_ml.config import load_settings
from aifx_ml.data.importer import import_frame
from aifx_ml.db.models import TradingSignal
from aifx_ml.domain import SignalPolicy
from aifx_ml.events.schemas import NewPrediction
from aifx_ml.models.calibration import Platt, Thresholds
from registry.mlflow_store import MlflowModelStore
from registry.stages import change_stage
from tests.event_payloads import announced
from tests.serving_helpers import register_constant, trending_candles

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
HISTORY = 24 * 14


class Service:
    def __init__(self, api: TestClient, engine: Engine, uri: str, clock: list[datetime]) -> None:
        self.api, self.engine, self.uri, self.clock = api, engine, uri, clock

    def predict(self, **body: Any) -> Any:
        return self.api.post("/api/v1/predict", json={"timeframe": "1h", **body})

    def signals(self) -> list[Any]:
        self.api.app.state.services.predictions.flush()  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return list(conn.execute(select(TradingSignal).order_by(TradingSignal.created_at)))


@pytest.fixture
def service(
    engine: Engine, db_url: str, mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.chdir(tmp_path)
    frame = trending_candles(str((T0 - timedelta(hours=HISTORY)).date()), HISTORY)
    import_frame(engine, frame, "EUR/USD", "1h", T0, source="test")
    clock = [T0]
    app = build_app(load_settings(), engine=engine, now=lambda: clock[0], refresh_seconds=0)
    with TestClient(app) as api:
        yield Service(api, engine, mlflow_uri, clock)


def arrange(service: Service, tmp_path: Path, p_up: float, status: str = "staging") -> str:
    return register_constant(
        service.engine, service.uri, str(tmp_path / "art"), p_up, T0 - timedelta(days=1), status
    )


def test_a_prediction_is_answered_recorded_and_announced(service: Service, tmp_path: Path) -> None:
    version = arrange(service, tmp_path, 0.8, "production")
    response = service.predict(pair="EUR/USD", routing_key="acct-1")
    assert response.status_code == 200
    body = response.json()
    assert (body["signal"], body["model_version"], body["ab_test_id"]) == ("buy", version, None)
    assert body["probability"] == pytest.approx(0.8, abs=1e-5)
    assert body["confidence"] == pytest.approx(0.8, abs=1e-5) and body["reason"] is None
    assert "predict;dur=" in response.headers["server-timing"]
    (row,) = service.signals()
    assert str(row.id) == body["signal_id"]
    assert (row.signal, row.actual_outcome, row.model_version, row.routing_key) == (
        "buy",
        "pending",
        version,
        "acct-1",
    )
    assert row.created_at == T0
    last_close = trending_candles(str((T0 - timedelta(hours=HISTORY)).date()), HISTORY)["close"]
    assert row.entry_price == pytest.approx(last_close.iloc[-1])
    (event,) = announced(service.engine, NewPrediction)
    assert event == NewPrediction(
        signal_id=row.id,
        pair="EUR/USD",
        timeframe="1h",
        signal="buy",
        confidence=row.confidence,
        entry_price=row.entry_price,
        created_at=T0,
        model_version=version,
        ab_test_id=None,
    )


def own_thresholds(buy: float | None, sell: float | None) -> Thresholds:
    """A version's thresholds as a full training stores them (the numbers beside are moot)."""
    return Thresholds(buy, sell, None, None, 0.5, 0.5, 0.0, 30, 200)


def test_each_version_answers_calibrated_at_its_own_thresholds(
    service: Service, tmp_path: Path, engine: Engine
) -> None:
    """The network says 0.7; its calibration makes that σ(0.5 · logit 0.7 − 0.2) ≈ 0.556, and
    its own buy threshold 0.55 makes it a buy (the global 0.55 would too, at 0.7 — so the
    sell-only version below is what tells them apart). A version that showed no edge holds,
    and says why; `--buy-threshold` overrides every version's own."""
    platt = Platt(0.5, -0.2)
    calibrated = float(platt(0.7))
    first = register_constant(
        service.engine, service.uri, str(tmp_path / "art"), 0.7, T0 - timedelta(days=1),
        "production", calibration=platt, thresholds=own_thresholds(0.55, None),
    )  # fmt: skip
    body = service.predict(pair="EUR/USD").json()
    assert (body["signal"], body["model_version"], body["reason"]) == ("buy", first, None)
    assert body["probability"] == pytest.approx(calibrated, abs=1e-5)
    assert service.signals()[-1].probability == pytest.approx(calibrated, abs=1e-5)
    sells_only = register_constant(
        service.engine, service.uri, str(tmp_path / "art"), 0.7, T0 - timedelta(days=1),
        thresholds=own_thresholds(None, 0.45),
    )  # fmt: skip
    change_stage(engine, MlflowModelStore(service.uri, service.uri, str(tmp_path / "art")),
                 sells_only, "production", as_of=T0, reason="test", actor="test")  # fmt: skip
    body = service.predict(pair="EUR/USD").json()
    assert (body["signal"], body["model_version"]) == ("hold", sells_only)
    assert body["reason"] == (
        f"model {sells_only} showed no edge on held-out data for buys: it never calls buy"
    )
    override = build_app(
        load_settings(), engine=engine, now=lambda: T0, refresh_seconds=0,
        policy=SignalPolicy.with_thresholds(0.6, None),
    )  # fmt: skip
    with TestClient(override) as api:
        body = api.post("/api/v1/predict", json={"pair": "EUR/USD", "timeframe": "1h"}).json()
    assert (body["signal"], body["model_version"], body["reason"]) == ("buy", sells_only, None)


def test_stale_inputs_and_a_stale_model_give_hold_with_the_reason(
    service: Service, tmp_path: Path
) -> None:
    arrange(service, tmp_path, 0.8, "production")
    service.clock[0] = T0 + timedelta(hours=3)  # the newest candle closed three bars ago
    late = service.predict(pair="EUR/USD").json()
    assert late["signal"] == "hold" and "more than 2 bars" in late["reason"]
    service.clock[0] = T0 + timedelta(days=20)
    frame = trending_candles(str((T0 - timedelta(hours=HISTORY)).date()), HISTORY + 24 * 20)
    import_frame(service.engine, frame, "EUR/USD", "1h", service.clock[0], source="test")
    old = service.predict(pair="EUR/USD").json()
    assert old["signal"] == "hold" and "days ago (limit 14)" in old["reason"]
    assert [s.signal for s in service.signals()] == ["hold", "hold"]


def test_candles_in_the_request_bad_input_and_no_model(service: Service, tmp_path: Path) -> None:
    assert service.predict(pair="EUR/USD").status_code == 404  # nothing in Production yet
    arrange(service, tmp_path, 0.3, "production")
    candles = trending_candles("2026-02-20", 8 + 60, drift=-0.001)
    sent = [
        {**row, "timestamp": row["timestamp"].isoformat()}
        for row in candles.to_dict(orient="records")
    ]
    service.clock[0] = candles["timestamp"].iloc[-1].to_pydatetime() + timedelta(hours=1)
    body = service.predict(pair="GBP/USD", candles=sent).json()
    # No stored GBP/USD candle to judge it by: the caller's close, and the signal unverified.
    assert body["signal"] == "sell" and body["entry_price"] == pytest.approx(
        candles["close"].iloc[-1]
    )
    assert body["verified"] is False
    (row,) = service.signals()
    assert row.verified is False and str(row.id) == body["signal_id"]
    short = service.predict(pair="GBP/USD", candles=sent[:30])
    assert short.status_code == 422 and "need at least 68 candles" in short.json()["detail"]
    for bad in (
        {"pair": "EURUSD"},
        {"pair": "EUR/USD", "timeframe": "2h"},
        {"routing_key": ""},
        {"routing_key": "acct\x00-1"},  # PostgreSQL cannot store NUL: refused before answering
        {"model_type": "lstm\x07"},
    ):
        assert service.predict(**{"pair": "EUR/USD", **bad}).status_code == 422


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"high": 0.5}, "high < max(open, close)"),
        ({"timestamp": "2030-01-01T00:00:00+00:00"}, "in the future"),
        ({"timestamp": "2300-01-01T00:00:00+00:00"}, "to before 2200"),
        ({"timestamp": "2026-02-20T00:30:00+00:00"}, "not on the 1h grid"),
    ],
)
def test_candles_sent_are_checked_like_an_import(
    service: Service, tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    arrange(service, tmp_path, 0.3, "production")
    candles = trending_candles("2026-02-20", 8 + 60)
    sent = [
        {**row, "timestamp": row["timestamp"].isoformat()}
        for row in candles.to_dict(orient="records")
    ]
    sent[-1] = {**sent[-1], **change}
    refused = service.predict(pair="GBP/USD", candles=sent)
    assert refused.status_code == 422 and reason in refused.json()["detail"]
    assert service.signals() == []


def test_the_stored_close_is_the_entry_price_and_caller_candles_decide_no_ab_test(
    service: Service, tmp_path: Path
) -> None:
    from aifx_ml.abtest.evaluation import test_outcomes
    from aifx_ml.abtest.store import create_test

    a = arrange(service, tmp_path, 0.3, "production")
    b = arrange(service, tmp_path, 0.8)
    test = create_test(
        service.engine, name="t", model_a_version=a, model_b_version=b, traffic_split=0.5, as_of=T0
    )
    stored = trending_candles(str((T0 - timedelta(hours=HISTORY)).date()), HISTORY)
    mine = stored.tail(8 + 60).reset_index(drop=True)
    mine.loc[len(mine) - 1, ["high", "close"]] *= 1.5  # a close of the caller's choosing
    sent = [
        {**row, "timestamp": row["timestamp"].isoformat()} for row in mine.to_dict(orient="records")
    ]
    steered = service.predict(pair="EUR/USD", routing_key="acct-1", candles=sent).json()
    assert steered["entry_price"] == pytest.approx(stored["close"].iloc[-1])
    assert (steered["verified"], steered["ab_test_id"]) == (False, str(test.id))
    honest = [service.predict(pair="EUR/USD", routing_key=f"acct-{i}").json() for i in range(4)]
    assert all(h["verified"] for h in honest)
    assert len(service.signals()) == 5
    assert len(test_outcomes(service.engine, test)) == 4  # the caller's candles count for nothing


@pytest.mark.parametrize("sent", [None, "wrong", "caf\u00e9"])
def test_a_predict_token_guards_predictions_when_set(
    engine: Engine,
    db_url: str,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sent: str | None,
) -> None:
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("AIFX_PREDICT_TOKEN", "s3cret")
    monkeypatch.chdir(tmp_path)
    app = build_app(load_settings(), engine=engine, now=lambda: T0, refresh_seconds=0)
    body = {"pair": "EUR/USD", "timeframe": "1h"}
    with TestClient(app) as api:
        headers = {} if sent is None else {"Authorization": f"Bearer {sent}".encode("latin-1")}
        refused = api.post("/api/v1/predict", json=body, headers=headers)
        # A byte outside ASCII is a malformed token (401), not a server error.
        assert refused.status_code == (403 if sent == "wrong" else 401)
        batch = api.post("/api/v1/predict/batch", json={"requests": [body]}, headers=headers)
        assert batch.status_code == refused.status_code
        # The right token gets through (404: nothing is in Production yet).
        allowed = {"Authorization": "Bearer s3cret"}
        assert api.post("/api/v1/predict", json=body, headers=allowed).status_code == 404
        # The write token's check shares the code: a non-ASCII byte is a 401 there too.
        writes = api.post(
            "/api/v1/ml/ab-tests",
            json={},
            headers={"Authorization": "Bearer caf\xe9".encode("latin-1")},
        )
        assert writes.status_code == 401


def test_ab_routing_is_sticky_and_a_promotion_swaps_the_model_without_a_restart(
    service: Service, tmp_path: Path
) -> None:
    from aifx_ml.abtest.store import create_test

    a = arrange(service, tmp_path, 0.3, "production")
    b = arrange(service, tmp_path, 0.8)
    test = create_test(
        service.engine, name="t", model_a_version=a, model_b_version=b, traffic_split=0.5, as_of=T0
    )
    seen: dict[str, set[str]] = {}
    for i in range(40):
        key = f"acct-{i % 10}"
        answer = service.predict(pair="EUR/USD", routing_key=key).json()
        assert answer["ab_test_id"] == str(test.id)
        seen.setdefault(key, set()).add(answer["variant"])
    assert all(len(v) == 1 for v in seen.values())  # one key, one arm
    assert {v.pop() for v in seen.values()} == {"a", "b"}

    batch = service.api.post(
        "/api/v1/predict/batch",
        json={"requests": [{"pair": "EUR/USD", "timeframe": "1h"} for _ in range(6)]},
    ).json()["predictions"]
    assert len(batch) == 6 and {p["model_version"] for p in batch} <= {a, b}

    from aifx_ml.abtest.store import cancel_test

    cancel_test(service.engine, test.id, as_of=T0, reason="done")
    store = MlflowModelStore(service.uri, service.uri, str(tmp_path / "art"))
    change_stage(service.engine, store, b, "production", as_of=T0, reason="t", actor="t")
    after = service.predict(pair="EUR/USD").json()  # same process, same app
    assert (after["model_version"], after["signal"], after["ab_test_id"]) == (b, "buy", None)
    assert len(service.signals()) == 40 + 6 + 1
    assert uuid.UUID(after["signal_id"])
