"""The monthly evaluation, run by Prefect, on synthetic markets whose regime changes — or not:
a model trained before the change must be reported drifted and degraded with a
recommendation to retrain; on the same seed without the change, neither (no false alarm)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from sqlalchemy import Engine, select

from aifx_ml.data.candles import load_candles
from aifx_ml.data.importer import import_frame
from aifx_ml.data.synth import synthesize_candles
from aifx_ml.db.models import Alert, ModelEvaluation, ModelVersion
from aifx_ml.evaluation.monthly import (
    Thresholds,
    VersionEvaluation,
    evaluate_version,
    previous_month,
    scored_samples,
)
from aifx_ml.evaluation.monthly_run import evaluation_window
from aifx_ml.markets import approx_step
from aifx_ml.training.config import Stores
from aifx_ml.training.runs import train_full
from flows.monthly_evaluation import monthly_evaluation_flow
from registry.mlflow_store import MlflowModelStore
from registry.stages import change_stage
from tests.conftest import tiny_training_config

pytestmark = pytest.mark.integration
TRAINED = datetime(2026, 3, 1, 1, tzinfo=UTC)
EVALUATED = datetime(2026, 5, 1, 2, tzinfo=UTC)  # the 1st, 02:00: April has just ended


# Each case on one database, not both (four tests merged into two): here the database only keeps
# the books (candles, the evaluation row, alerts), as in tests/data on both kinds. The change,
# which writes the most (two alerts, a retrain), runs on PostgreSQL; no change on SQLite.
@pytest.mark.parametrize(
    ("db_url", "switch", "changed"),
    [("postgresql", 0.6, True), ("sqlite", 1.0, False)],
    indirect=["db_url"],
)
def test_a_regime_change_is_found_and_no_change_is_not(
    prefect_api: None,
    engine: Engine,
    db_url: str,
    mlflow_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    switch: float,
    changed: bool,
) -> None:
    # Strong momentum until the switch (mid-March when 0.6), mean reversion after it.
    frames = synthesize_candles(
        ["EUR/USD", "GBP/USD"],
        "1h",
        pd.Timestamp("2026-01-01", tz="UTC"),
        pd.Timestamp("2026-05-01", tz="UTC"),
        seed=3,
        pattern_switch=switch,
        pattern_strength=0.8,
    )
    for pair, frame in frames.items():
        import_frame(engine, frame, pair, "1h", EVALUATED, source="synthetic")
    store = MlflowModelStore(mlflow_uri, mlflow_uri, str(tmp_path / "art"))
    stores = Stores(engine, store, tmp_path / "locks")
    config = tiny_training_config(
        days=45, epochs=6, window=10, lstm_units=[8, 4], dense_units=4, learning_rate=0.01
    )
    trained = train_full(stores, config, TRAINED)
    assert trained.status == "completed" and trained.version
    assert trained.metrics["holdout_accuracy"] > 0.6  # it learned the momentum
    change_stage(engine, store, trained.version, "production", as_of=TRAINED, reason="t", actor="t")

    for name, value in {
        "AIFX_DATABASE_URL": db_url,
        "AIFX_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "AIFX_ARTIFACT_ROOT": str(tmp_path / "art"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert previous_month(EVALUATED) == "2026-04"
    deployment = asyncio.run(register_weekly_deployment())
    result = monthly_evaluation_flow(as_of=EVALUATED, trigger_retrain=True)

    (found,) = result.evaluations
    assert (found["month"], found["version"], found["status"]) == (
        "2026-04",
        trained.version,
        "production",
    )
    assert found["samples"] > 500
    # The flow scored each series in a task of its own and put them together: the same
    # numbers as one dataset of both series, scored at once (the evaluation before it mapped).
    whole = one_dataset_evaluation(engine, store, trained.version, "2026-04", EVALUATED)
    assert found["samples"] == whole.samples
    for key in ("accuracy", "auc", "log_loss", "brier", "drift_share"):
        assert found[key] == pytest.approx(getattr(whole, key), abs=1e-6), key
    assert found["drifted_features"] == whole.drifted_features
    assert found["drift"] is changed and found["degraded"] is changed, found["reasons"]
    assert found["recommendation"] == ("retrain" if changed else "keep")
    if changed:
        assert found["accuracy"] < found["holdout_accuracy"] - 0.05
        assert {"rsi", "stoch_k", "adx"} <= set(found["drifted_features"])
    else:
        assert found["drift_share"] < 0.5
    # Where it says retrain, the weekly full training deployment was started at once.
    if changed:
        run_id = result.retrains["lstm"]
        started = asyncio.run(read_flow_run(run_id))
        assert started.deployment_id == deployment
        assert "monthly-retrain" in started.tags
    else:
        assert result.retrains == {}
    with engine.connect() as conn:
        kinds = sorted(conn.execute(select(Alert.kind)).scalars())
    assert kinds == (["evaluation_degraded", "evaluation_drift"] if changed else [])

    # Stored three ways: the report file, the table, the version's production metrics.
    report = Path(found["report_path"])
    html = report.read_text(encoding="utf-8")
    assert "PSI" in html and "Accuracy" in html  # the drift tests and the quality metrics
    with engine.connect() as conn:
        row = conn.execute(select(ModelEvaluation)).one()
        latest = conn.execute(
            select(ModelVersion.production_metrics).where(ModelVersion.version == trained.version)
        ).scalar_one()["latest"]
    assert (row.recommendation, row.drift, row.degraded) == (
        found["recommendation"],
        changed,
        changed,
    )
    assert latest["month"] == "2026-04" and latest["recommendation"] == found["recommendation"]
    # …and in MLflow: an evaluation run with the report, linked from the model version.
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    run_id = client.get_model_version("aifx-lstm", "1").tags["aifx.last_evaluation"]
    assert row.mlflow_run_id == run_id
    run = client.get_run(run_id)
    assert run.data.tags["aifx.run_type"] == "monthly_evaluation"
    assert run.data.metrics["drift_share"] == pytest.approx(found["drift_share"])
    assert report.name in {a.path for a in client.list_artifacts(run_id)}


def one_dataset_evaluation(
    engine: Engine, store: MlflowModelStore, version: str, month: str, as_of: datetime
) -> VersionEvaluation:
    """The version's evaluation from one dataset of all its series (no task per series)."""
    with engine.connect() as conn:
        row = conn.execute(select(ModelVersion).where(ModelVersion.version == version)).one()
    loaded = store.load(row)  # type: ignore[arg-type]
    card = loaded.card
    start, end = evaluation_window(month, as_of)
    train_start = pd.Timestamp(card.data_time_range["start"])
    train_end = pd.Timestamp(row.metrics["holdout_start"])
    pairs, tfs = list(card.pairs), list(card.timeframes)
    lookback = max(approx_step(tf) for tf in tfs) * (2 * card.window + 72)

    def scored(lo: pd.Timestamp, read_from: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
        frame = load_candles(engine, read_from.to_pydatetime(), hi.to_pydatetime(), pairs, tfs)
        return scored_samples(loaded.model, card, frame, lo, hi)

    evaluation, _ = evaluate_version(
        version=version,
        model_type=row.model_type,
        status=row.status,
        month=month,
        reference=scored(train_start, train_start, train_end),
        current=scored(start, start - lookback, end),
        holdout=row.metrics,
        thresholds=Thresholds(),
    )
    return evaluation


async def register_weekly_deployment() -> uuid.UUID:
    """The `weekly-full` deployment on the test's Prefect API (as `prefect deploy` makes it)."""
    async with get_client() as client:
        flow_id = await client.create_flow_from_name("weekly-full")
        return await client.create_deployment(
            flow_id=flow_id, name="weekly-full", entrypoint="flows/weekly_full.py:weekly_full_flow"
        )


async def read_flow_run(run_id: str) -> Any:
    async with get_client() as client:
        return await client.read_flow_run(uuid.UUID(run_id))
