"""Shadow tests on both databases: the challenger answers every request unseen, its answers
are recorded in `shadow_signals` and labeled like served ones, the paired test decides, and
a shadow winner is promoted through the registry exactly like a split test's.

Constant models in the in-memory store (MLflow is not what is tested here); candles that
rise 0.2 % an hour, so within the 4-hour horizon a buy wins and a sell loses.
"""

from __future__ import annotations

import gc
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from aifx_ml.abtest.evaluation import evaluate_test, look
from aifx_ml.abtest.store import create_test, get_test
from aifx_ml.config import load_settings
from aifx_ml.data.importer import import_frame
from aifx_ml.db.models import ModelStageHistory, ModelVersion, ShadowSignal, TradingSignal
from aifx_ml.errors import InvalidInputError
from aifx_ml.events.schemas import ABTestCompleted, ABTestCreated, NewPrediction, SignalOutcome
from aifx_ml.labeling.store import label_pending
from aifx_ml.serving.app import create_app
from aifx_ml.serving.deps import RegistryActions
from aifx_ml.serving.forward import BUCKETS
from aifx_ml.serving.inference import Assignment, ModelServer
from aifx_ml.serving.metrics import REGISTRY
from aifx_ml.serving.predict import PredictionService, PredictRequest
from registry.abtest import complete_with_winner
from tests.event_payloads import announced
from tests.memory_registry import T0, TOKEN, World, serving_app
from tests.serving_helpers import trending_candles

pytestmark = pytest.mark.integration
HISTORY = 24 * 14


@pytest.fixture
def world(engine: Engine) -> World:
    """Candles up to 11 days after T0 and two constant versions: A (Production) says sell,
    B (Staging) says buy."""
    start = T0 - timedelta(hours=HISTORY)
    frame = trending_candles(str(start.date()), HISTORY + 24 * 11)
    import_frame(engine, frame, "EUR/USD", "1h", T0 + timedelta(days=11), source="test")
    return World(engine)


def arms(world: World) -> tuple[str, str]:
    a, b = world.register(0.3), world.register(0.8)
    world.promote(a)
    return a, b


def shadow_test(world: World, a: str, b: str) -> Any:
    return create_test(
        world.engine, name="shadow", model_a_version=a, model_b_version=b,
        traffic_split=None, as_of=T0, mode="shadow",
    )  # fmt: skip


@pytest.fixture
def api(
    world: World, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setenv("AIFX_DATABASE_URL", db_url)
    monkeypatch.setenv("AIFX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AIFX_API_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)

    def complete(engine: Engine, test: Any, winner: str, **kwargs: Any) -> Any:
        return complete_with_winner(engine, world.store, test, winner, **kwargs)

    app = create_app(
        load_settings(),
        store=world.store,
        registry=RegistryActions(complete_with_winner=complete, mark_challenger=lambda e, t: None),
        engine=world.engine,
        now=lambda: T0 + timedelta(hours=1),
        refresh_seconds=0,
    )
    with TestClient(app) as client:
        yield client


def rows(engine: Engine, model: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(model).order_by(model.created_at, model.id)))


def test_the_caller_hears_production_and_the_challenger_answers_unseen(
    world: World, api: TestClient
) -> None:
    a, b = arms(world)
    test = shadow_test(world, a, b)
    answers = [
        api.post(
            "/api/v1/predict", json={"pair": "EUR/USD", "timeframe": "1h", "routing_key": f"k{i}"}
        ).json()
        for i in range(6)
    ]
    batch = api.post(
        "/api/v1/predict/batch",
        json={"requests": [{"pair": "EUR/USD", "timeframe": "1h"} for _ in range(4)]},
    ).json()["predictions"]
    api.app.state.services.predictions.flush()  # type: ignore[attr-defined]
    for answer in answers + batch:
        assert (answer["model_version"], answer["signal"], answer["variant"]) == (a, "sell", "a")
        assert answer["ab_test_id"] == str(test.id)
        assert b not in str(answer) and "shadow" not in str(answer)  # nothing of B leaks
    served, shadows = rows(world.engine, TradingSignal), rows(world.engine, ShadowSignal)
    assert len(served) == len(shadows) == 10
    by_served = {s.served_signal_id: s for s in shadows}
    for row in served:
        shadow = by_served[row.id]
        assert (shadow.model_version, shadow.signal, shadow.actual_outcome) == (b, "buy", "pending")
        assert shadow.ab_test_id == test.id == row.ab_test_id
        assert (shadow.pair, shadow.created_at, shadow.entry_price) == (
            row.pair,
            row.created_at,
            row.entry_price,
        )
        assert shadow.probability == pytest.approx(0.8, abs=1e-5)
    # Only what was served is announced.
    assert {e.model_version for e in announced(world.engine, NewPrediction)} == {a}
    assert len(announced(world.engine, NewPrediction)) == 10


def test_candles_a_caller_sends_get_no_shadow_answer(world: World, api: TestClient) -> None:
    a, b = arms(world)
    shadow_test(world, a, b)
    candles = trending_candles(str((T0 - timedelta(hours=100)).date()), 100)
    candles = candles[candles["timestamp"] < T0 + timedelta(hours=1)]
    body = {
        "pair": "EUR/USD",
        "timeframe": "1h",
        "candles": [
            {**r, "timestamp": r["timestamp"].isoformat()} for r in candles.to_dict("records")
        ],
    }
    response = api.post("/api/v1/predict", json=body)
    assert response.status_code == 200, response.text
    api.app.state.services.predictions.flush()  # type: ignore[attr-defined]
    (served,) = rows(world.engine, TradingSignal)
    assert served.verified is False
    assert rows(world.engine, ShadowSignal) == []  # unverified: it decides nothing


def test_shadow_answers_are_labeled_the_paired_test_decides_and_the_winner_is_promoted(
    world: World,
) -> None:
    a, b = arms(world)
    test = shadow_test(world, a, b)
    clock = [T0]
    server = ModelServer(world.engine, world.store, refresh_seconds=0)
    service = PredictionService(world.engine, server, lambda: clock[0])
    try:
        for hour in range(1, 24 * 9):  # one request an hour for nine days
            clock[0] = T0 + timedelta(hours=hour)
            service.predict([PredictRequest("EUR/USD", "1h", routing_key=f"k{hour}")])
    finally:
        service.close()
    end = T0 + timedelta(days=9, hours=5)
    report = label_pending(world.engine, end)
    assert report.labeled == report.shadow_labeled == 24 * 9 - 1
    assert report.still_pending == report.shadow_pending == 0
    assert {(s.signal, s.actual_outcome) for s in rows(world.engine, ShadowSignal)} == {
        ("buy", "win")
    }
    # Labeling a shadow answer is not news for anyone: only served outcomes are announced.
    outcomes = announced(world.engine, SignalOutcome)
    assert len(outcomes) == 24 * 9 - 1 and {o.model_version for o in outcomes} == {a}

    seen = look(world.engine, get_test(world.engine, test.id), end)
    assert seen.decision.srm is None
    assert (seen.decision.decided_a, seen.decision.decided_b) == (24 * 9 - 1, 24 * 9 - 1)
    assert seen.arms["a"].win_rate == 0.0 and seen.arms["b"].win_rate == 1.0

    promote = partial(complete_with_winner, world.engine, world.store, actor="flow")
    evaluated = evaluate_test(world.engine, test.id, end, promote)
    assert (evaluated.decision.status, evaluated.decision.winner) == ("winner", "b")
    done = get_test(world.engine, test.id)
    assert (done.status, done.winner, done.mode) == ("completed", b, "shadow")
    with world.engine.connect() as conn:
        statuses = dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())
        history = conn.execute(
            select(ModelStageHistory.version, ModelStageHistory.to_status).where(
                ModelStageHistory.ab_test_id == test.id
            )
        ).all()
    assert statuses == {a: "archived", b: "production"}
    assert (b, "production") in history
    (completed,) = announced(world.engine, ABTestCompleted)
    assert (completed.mode, completed.traffic_split, completed.winner) == ("shadow", 0.0, b)


def test_a_shadow_test_takes_no_split_and_a_split_test_needs_one(world: World) -> None:
    a, b = arms(world)
    with pytest.raises(InvalidInputError, match="a shadow test sends no traffic"):
        create_test(
            world.engine, name="t", model_a_version=a, model_b_version=b,
            traffic_split=0.2, as_of=T0, mode="shadow",
        )  # fmt: skip
    with pytest.raises(InvalidInputError, match="invalid traffic_split None"):
        create_test(
            world.engine, name="t", model_a_version=a, model_b_version=b,
            traffic_split=None, as_of=T0,
        )  # fmt: skip
    with pytest.raises(InvalidInputError, match="invalid mode 'mirror'"):
        create_test(
            world.engine, name="t", model_a_version=a, model_b_version=b,
            traffic_split=None, as_of=T0, mode="mirror",
        )  # fmt: skip
    test = shadow_test(world, a, b)
    assert (test.mode, test.traffic_split) == ("shadow", 0.0)
    (created,) = announced(world.engine, ABTestCreated)
    assert (created.mode, created.traffic_split) == ("shadow", 0.0)


def test_the_api_creates_either_kind(world: World, api: TestClient) -> None:
    a, b = arms(world)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"test_name": "s", "model_a_version": a, "model_b_version": b, "mode": "shadow"}
    refused = api.post("/api/v1/ml/ab-tests", json={**body, "traffic_split": 0.3}, headers=auth)
    assert refused.status_code == 422 and "shadow test sends no traffic" in refused.text
    created = api.post("/api/v1/ml/ab-tests", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert (created.json()["mode"], created.json()["traffic_split"]) == ("shadow", 0.0)
    test_id = created.json()["id"]
    metrics = api.get(f"/api/v1/ml/ab-tests/{test_id}/metrics").json()
    assert metrics["decision"]["srm"] is None and metrics["decision"]["status"] == "continue"
    api.post(f"/api/v1/ml/ab-tests/{test_id}/cancel", json={}, headers=auth)
    split = api.post(
        "/api/v1/ml/ab-tests", json={**body, "mode": "split", "traffic_split": 0.3}, headers=auth
    )
    assert split.status_code == 201 and split.json()["mode"] == "split"
    assert uuid.UUID(split.json()["id"])


def test_a_shadow_answer_the_database_refuses_never_costs_the_served_row(world: World) -> None:
    from aifx_ml.serving.signal_writer import SignalWriter
    from aifx_ml.signals import SHADOW

    a, b = arms(world)
    test = shadow_test(world, a, b)
    served_id = uuid.uuid4()
    served = {
        "id": served_id, "pair": "EUR/USD", "timeframe": "1h", "signal": "sell",
        "confidence": 0.4, "probability": 0.3, "entry_price": 1.1, "created_at": T0,
        "actual_outcome": "pending", "model_version": a, "ab_test_id": test.id,
        "routing_key": None, "verified": True,
    }  # fmt: skip
    bad_shadow = {
        "id": uuid.uuid4(), "ab_test_id": test.id, "model_version": b, "pair": "EUR/USD",
        "timeframe": "1h", "signal": "maybe", "confidence": 0.6, "probability": 0.8,
        "entry_price": 1.1, "created_at": T0,
    }  # fmt: skip
    good = {**served, "id": uuid.uuid4(), SHADOW: {**bad_shadow, "signal": "buy"}}
    writer = SignalWriter(world.engine)
    try:
        writer.enqueue([{**served, SHADOW: bad_shadow}, good])
        assert writer.flush(timeout=30)
        status = writer.status()
    finally:
        writer.close()
    assert {r.id for r in rows(world.engine, TradingSignal)} == {served_id, good["id"]}
    (kept,) = rows(world.engine, ShadowSignal)  # the sound one; the refused one is logged
    assert kept.served_signal_id == good["id"] and kept.signal == "buy"
    assert (status.rejected, status.committed) == (0, 2)


class HeldServer:
    """The real server's assignment, with the challenger's model call held until released
    (or failing): what a slow or broken challenger looks like to the service."""

    def __init__(self, real: ModelServer, fail: bool = False) -> None:
        self.real, self.fail, self.release, self.calls = real, fail, threading.Event(), 0

    def assignment(self, model_type: str) -> Assignment:
        real = self.real.assignment(model_type)
        assert real.arm_b is not None
        call = real.arm_b._call

        def held(windows: Any) -> Any:
            self.calls += 1
            if self.fail:
                raise RuntimeError("the challenger's model is broken")
            assert self.release.wait(30), "never released"
            return call(windows)

        return replace(real, arm_b=replace(real.arm_b, _call=held, _batcher=None))


@pytest.mark.parametrize("fail", [False, True], ids=["slow", "broken"])
def test_the_caller_never_waits_for_the_challenger_nor_loses_its_row_to_it(
    world: World, fail: bool
) -> None:
    a, b = arms(world)
    shadow_test(world, a, b)
    server = HeldServer(ModelServer(world.engine, world.store, refresh_seconds=0), fail=fail)
    service = PredictionService(world.engine, server, lambda: T0 + timedelta(hours=1))  # type: ignore[arg-type]
    try:
        (answer,) = service.predict([PredictRequest("EUR/USD", "1h")], wait=False)
        # Answered while B's call is still held: the writer waits for it, not the caller.
        assert (answer.model_version, answer.signal) == (a, "sell")
        assert not server.release.is_set()
        server.release.set()
        assert service.flush(timeout=30)
    finally:
        service.close()
    assert server.calls == 1
    (served,) = rows(world.engine, TradingSignal)
    assert served.id == answer.signal_id
    shadows = rows(world.engine, ShadowSignal)
    if fail:  # the served row is kept; the shadow answer is logged as lost
        assert shadows == []
    else:
        (shadow,) = shadows
        assert (shadow.served_signal_id, shadow.model_version, shadow.signal) == (
            answer.signal_id,
            b,
            "buy",
        )


def test_the_service_is_ready_once_both_arms_are_loaded_and_compiled(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = arms(world)
    shadow_test(world, a, b)
    app = serving_app(
        world,
        tmp_path,
        monkeypatch,
        now=lambda: T0 + timedelta(hours=1),
        refresh_seconds=60,
        preload=True,
        freeze_heap=True,
    )
    server = app.state.model_server
    assert server.readiness.ready is False  # nothing loaded before the app starts

    def model_calls(version: str) -> float:
        found = REGISTRY.get_sample_value(
            "aifx_model_call_duration_seconds_count", {"model_version": version}
        )
        return found or 0.0

    calls_before = {v: model_calls(v) for v in (a, b)}
    frozen_before = gc.get_freeze_count()
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while (ready := client.get("/api/v1/monitoring/ready")).status_code != 200:
            assert ready.status_code == 503 and ready.json()["status"] == "loading"
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.05)
        assert ready.json() == {"status": "ready", "loaded": sorted([a, b]), "unserved": []}
        # Every batch size compiled before ready: a burst compiles nothing.
        for model in server.loaded_models():
            assert model.compiled_batches() == list(BUCKETS), model.version
        # What was loaded is out of the collector's full passes (`aifx serve` asks for it).
        assert gc.get_freeze_count() > frozen_before
        gc.unfreeze()  # this is a test process: give its objects back to the collector
        # The windows were built ahead and scaled for each arm: the first request builds nothing.
        (window,) = {model.window for model in server.loaded_models()}
        inputs = app.state.services.predictions.windows.in_memory(
            "EUR/USD", "1h", window, T0 + timedelta(hours=1)
        )
        assert inputs is not None and set(inputs._scaled) == {a, b}
        # One call of each version on its worker thread (its first TensorFlow call), no more.
        assert {v: model_calls(v) - calls_before[v] for v in (a, b)} == {a: 1.0, b: 1.0}
        # Loaded ahead: the first request loads nothing.
        loaded_before = server.loaded_versions()
        answer = client.post("/api/v1/predict", json={"pair": "EUR/USD", "timeframe": "1h"})
        assert answer.status_code == 200 and server.loaded_versions() == loaded_before


def test_who_serves_is_read_last_so_the_first_request_after_ready_finds_it(
    world: World,
) -> None:
    a, b = arms(world)
    shadow_test(world, a, b)
    clock = [0.0]
    server = ModelServer(world.engine, world.store, refresh_seconds=2.0, monotonic=lambda: clock[0])

    def compiling_took_long() -> None:  # the compilations and windows: longer than the refresh
        clock[0] += 10.0

    assert server.preload(then=compiling_took_long).ready
    found = server.assignment_in_memory("lstm")  # no database question for the first request
    assert found is not None
    assert found.arm_a is not None and found.arm_b is not None
    assert (found.arm_a.version, found.arm_b.version) == (a, b)
