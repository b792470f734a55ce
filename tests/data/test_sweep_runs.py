"""A weekly training with a candidate sweep, on real databases and a real MLflow store: each
candidate a nested run of the weekly run, the best on validation registered, and only it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from sqlalchemy import Engine, func, select

from aifx_ml.db.models import ModelTrainingLog, ModelVersion
from aifx_ml.training.config import Stores, TrainingConfig, TrainingFailedError
from aifx_ml.training.runs import train_full
from aifx_ml.training.sweep import CandidateFit, SearchSpace, candidates, fit_each
from registry.mlflow_store import MlflowModelStore
from tests.conftest import TRAIN_AS_OF, import_synthetic, tiny_training_config

pytestmark = pytest.mark.integration
SPACE = SearchSpace.from_mapping({"window": [6, 8, 10], "learning_rate": [0.001, 0.01]})


@pytest.fixture
def stores(engine: Engine, mlflow_uri: str, tmp_path: Path) -> Stores:
    import_synthetic(engine)
    return Stores(
        engine=engine,
        models=MlflowModelStore(mlflow_uri, mlflow_uri, str(tmp_path / "artifacts")),
        lock_dir=tmp_path / "locks",
        code_version="test-commit",
    )


def test_a_sweep_registers_the_best_on_validation_and_logs_every_candidate(
    stores: Stores, engine: Engine, mlflow_uri: str
) -> None:
    base = tiny_training_config(seed=3)
    configs = candidates(base, SPACE, 3, seed=11)
    result = train_full(stores, base, TRAIN_AS_OF, candidates=configs, fit_candidates=fit_each)

    assert result.status == "completed", result.reason
    client = MlflowClient(mlflow_uri, mlflow_uri)
    parent = client.get_run(result.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 3
    losses = {
        int(c.data.tags["aifx.candidate"]): c.data.metrics["validation_loss"] for c in children
    }
    chosen = [
        int(c.data.tags["aifx.candidate"]) for c in children if c.data.tags["aifx.chosen"] == "true"
    ]
    assert chosen == [min(losses, key=lambda i: (losses[i], i))]
    assert parent.data.tags["aifx.chosen_candidate"] == str(chosen[0])
    assert parent.data.params["candidates"] == "3"
    # The registered version is the chosen candidate's architecture.
    assert int(parent.data.params["lstm_window"]) == configs[chosen[0]].lstm.window
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ModelVersion)) == 1
    assert result.metrics["holdout_samples"] > 0


def test_a_candidate_that_fails_fails_the_run_recorded_and_registers_nothing(
    stores: Stores, engine: Engine
) -> None:
    def one_fails(
        configs: Sequence[TrainingConfig],
        candles: pd.DataFrame,
        signals: pd.DataFrame | None,
        since: datetime,
    ) -> list[CandidateFit]:
        fit_each(configs[:1], candles, signals, since)
        raise RuntimeError("worker lost")  # after one fitted: nothing half-registered

    base = tiny_training_config()
    configs = candidates(base, SPACE, 2, seed=1)
    with pytest.raises(TrainingFailedError, match="worker lost"):
        train_full(stores, base, TRAIN_AS_OF, candidates=configs, fit_candidates=one_fails)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ModelVersion)) == 0
        logged = conn.execute(select(ModelTrainingLog.status, ModelTrainingLog.error_message)).one()
    assert logged.status == "failed" and "worker lost" in logged.error_message


def test_one_candidate_is_todays_training_unchanged(
    engine: Engine, tmp_path: Path, mlflow_uri: str
) -> None:
    """K = 1, the default: no sweep runs (nothing fitted apart, no nested run), and the same
    seed gives the same model as a training called without candidates, as before sweeps."""
    import_synthetic(engine)

    def never(*_: object) -> list[CandidateFit]:
        raise AssertionError("K = 1 fitted candidates apart")

    config = tiny_training_config(seed=5)
    results = []
    for i, extra in enumerate([{}, {"candidates": [config], "fit_candidates": never}]):
        stores = Stores(
            engine=engine,
            models=MlflowModelStore(mlflow_uri, mlflow_uri, str(tmp_path / f"artifacts{i}")),
            lock_dir=tmp_path / "locks",
        )
        results.append(train_full(stores, config, TRAIN_AS_OF, **extra))  # type: ignore[arg-type]
    first, second = results
    assert first.status == second.status == "completed"
    assert (first.version, second.version) == ("lstm-v1", "lstm-v2")
    keys = ("holdout_accuracy", "holdout_auc", "holdout_log_loss", "epochs_run", "train_samples")
    assert {k: first.metrics[k] for k in keys} == {k: second.metrics[k] for k in keys}
    client = MlflowClient(mlflow_uri, mlflow_uri)
    parent = client.get_run(second.mlflow_run_id)
    assert "candidates" not in parent.data.params
    assert not client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
