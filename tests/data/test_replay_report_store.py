"""The replay report over a real store: a production history of trained versions, the report
built from the tables and the registry, written as HTML and JSON, and logged to MLflow."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from aifx_ml.abtest.store import complete_test, create_test
from aifx_ml.db.engine import transaction
from aifx_ml.db.models import ModelEvaluation, TradingSignal
from aifx_ml.domain import decide
from aifx_ml.models.versions import get_version
from aifx_ml.replay.assemble import build_report, write_report
from aifx_ml.replay.render import HTML_NAME, JSON_NAME
from aifx_ml.serving.inputs import stored_window
from registry.mlflow_store import log_replay_report
from registry.stages import change_stage
from tests.registry_world import World, copy_world, store_for

pytestmark = pytest.mark.integration

START = datetime(2026, 2, 20, tzinfo=UTC)
FIRST = datetime(2026, 2, 23, 0, 0, tzinfo=UTC)  # the first promotion (v1)
SECOND = datetime(2026, 2, 25, 12, 0, tzinfo=UTC)  # v2 replaces it: the change
END = datetime(2026, 3, 2, tzinfo=UTC)


def _arrange(engine: Engine, uri: str, world: World, tmp_path: Path) -> None:
    """v1 then v2 in Production, an A/B test of v2 against v3 ended without a winner, and one
    monthly evaluation with its report file."""
    store = store_for(uri)
    v1, v2, v3 = world.versions
    for version, at in ((v1, FIRST), (v2, SECOND)):
        change_stage(engine, store, version, "production", as_of=at, reason="arrange", actor="test")
    test = create_test(
        engine,
        name="v2 vs v3",
        model_a_version=v2,
        model_b_version=v3,
        traffic_split=0.5,
        as_of=SECOND + timedelta(hours=1),
    )
    # Signals the test routed: v2 won twice and lost once, v3 won once and has one pending;
    # one of another version says nothing about either arm.
    routed = [(v2, "win"), (v2, "win"), (v2, "loss"), (v3, "win"), (v3, "pending"), (v1, "win")]
    with transaction(engine) as session:
        session.add_all(
            TradingSignal(
                pair="EUR/USD",
                timeframe="1h",
                signal="buy",
                confidence=0.6,
                entry_price=1.1,
                created_at=SECOND + timedelta(hours=2),
                actual_outcome=outcome,
                model_version=version,
                ab_test_id=test.id,
            )
            for version, outcome in routed
        )
    complete_test(
        engine, test.id, as_of=SECOND + timedelta(days=2), winner=None, reason="stopped: no winner"
    )
    report = tmp_path / "evidently" / f"{v1}.html"
    report.parent.mkdir()
    report.write_text("<html></html>")
    with transaction(engine) as session:
        session.add(
            ModelEvaluation(
                version=v1,
                model_type="lstm",
                month="2026-02",
                status="archived",
                samples=300,
                accuracy=0.52,
                auc=0.53,
                drift_share=0.1,
                degraded=False,
                drift=False,
                recommendation=None,
                report_path=str(report),
                evaluated_at=END,
            )
        )


def test_replay_report_over_a_store(engine: Engine, world: World, tmp_path: Path) -> None:
    uri = copy_world(world, engine, tmp_path)
    _arrange(engine, uri, world, tmp_path)
    v1, v2, v3 = world.versions
    store = store_for(uri)
    client = store.client
    report = build_report(
        engine,
        store,
        start=START,
        end=END,
        pairs=["EUR/USD", "GBP/USD"],
        timeframes=["1h"],
        change_at=SECOND,
        title="store replay",
    )

    scored = report.comparison.scored
    assert scored["time"].min() >= pd.Timestamp(FIRST) and scored["time"].max() < pd.Timestamp(END)
    coverage = report.comparison.coverage
    assert coverage["before_first_production"] > 0 and coverage["frozen_version"] == v1
    assert coverage["requests"] == scored["request"].nunique() > 100
    models = scored[scored["series"].isin(["continuous", "frozen"])]
    assert models["p_up"].between(0, 1).all()
    frozen = scored[scored["series"] == "frozen"]
    continuous = scored[scored["series"] == "continuous"]
    assert set(frozen["version"]) == {v1}
    switched = continuous["time"] >= pd.Timestamp(SECOND)
    assert set(continuous["version"][~switched]) == {v1} and set(
        continuous["version"][switched]
    ) == {v2}
    # Before the change both series are the same model on the same requests.
    same = frozen["p_up"].to_numpy()[~switched.to_numpy()]
    assert np.array_equal(continuous["p_up"][~switched].to_numpy(), same)

    # A request's P(up) is what the version itself says of the stored window a live predict
    # would read at that moment, calibrated by its own calibration; its signal is decided at
    # the version's own thresholds, as serving decides it.
    for version, row in ((v2, continuous[switched].iloc[7]), (v1, frozen.iloc[-3])):
        loaded = store.load(get_version(engine, version))
        card = loaded.card
        assert card.calibration is not None and card.thresholds is not None
        window = stored_window(engine, row["pair"], "1h", card.window, row["time"])
        x = card.scaler.transform(window.features)[None]
        raw = float(np.asarray(loaded.model(x, training=False))[0, 0])
        assert float(card.calibration(raw)) == pytest.approx(row["p_up"], abs=1e-5)
        assert row["signal"] == decide(row["p_up"], card.thresholds.cutoffs)[0]
        assert row["no_edge"] == (card.thresholds.buy is None and card.thresholds.sell is None)
        assert window.entry_price == pytest.approx(row["entry_price"])
    assert report.policy["rule"].startswith("each version's own thresholds")

    assert report.timeline.production["version"].tolist() == [v1, v2]
    assert set(report.timeline.versions["version"]) == {v1, v2, v3}
    changes = report.timeline.stage_changes
    assert len(changes[changes["to_status"] == "production"]) == 2
    test = report.ab_tests.iloc[0]
    assert (test["status"], test["winner"], test["reason"]) == (
        "completed",
        None,
        "stopped: no winner",
    )
    arms = test[["signals_a", "wins_a", "losses_a", "signals_b", "wins_b", "losses_b"]]
    assert arms.tolist() == [3, 2, 1, 2, 1, 0]
    assert report.evaluations["version"].tolist() == [v1]
    assert report.verdict["scope"] == "after_change"
    assert report.verdict["before_change"]["continuous_minus_frozen_accuracy"] == 0.0

    html, json_path = write_report(report, tmp_path / "out")
    page = html.read_text(encoding="utf-8")
    assert page.count("<svg") == 3 and "<script" not in page and 'src="http' not in page
    assert Path(str(report.evaluations["report_path"].iloc[0])).as_uri() in page
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["verdict"] == json.loads(json.dumps(report.as_dict()["verdict"]))
    assert data["comparison"]["coverage"]["requests"] == coverage["requests"]
    assert data["headline"] == report.headline and report.headline in page

    tracking_before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    run_id = log_replay_report(
        store, report, html, json_path, run_name="store-replay", artifact_root=str(tmp_path / "a")
    )
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == tracking_before
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "store-replay"
    assert client.get_experiment(run.info.experiment_id).name == "aifx-replay"
    assert {a.path for a in client.list_artifacts(run_id)} == {HTML_NAME, JSON_NAME}
    after = report.comparison.periods["after_change"]
    assert run.data.metrics["continuous_accuracy_after"] == pytest.approx(
        after["continuous"].accuracy
    )
    assert run.data.metrics["frozen_accuracy_after"] == pytest.approx(after["frozen"].accuracy)
    assert "continuous_minus_frozen_accuracy_after_lo" in run.data.metrics
    assert run.data.params["start"] == START.isoformat()
    assert json.loads(run.data.params["pairs"]) == ["EUR/USD", "GBP/USD"]
