"""Training runs against real databases and a real MLflow store: what each ending leaves behind."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.models import Model
from sqlalchemy import Engine, select

from aifx_ml.db.models import ModelTrainingLog, ModelVersion
from aifx_ml.events.schemas import TrainingCompleted
from aifx_ml.models.store import InMemoryModelStore
from aifx_ml.training.config import Stores, TrainingFailedError
from aifx_ml.training.lock import training_lock
from aifx_ml.training.runs import train_full, train_incremental
from registry.integrity import download_version
from registry.mlflow_store import MlflowModelStore
from registry.stages import change_stage
from tests.conftest import TRAIN_AS_OF, import_synthetic, tiny_training_config
from tests.event_payloads import announced, outbox_payloads

pytestmark = pytest.mark.integration

MONDAY = TRAIN_AS_OF + timedelta(days=1)  # only a few hours of new data since the weekly run
WEDNESDAY = TRAIN_AS_OF + timedelta(days=3)


@pytest.fixture
def stores(engine: Engine, mlflow_uri: str, tmp_path: Path) -> Iterator[Stores]:
    import_synthetic(engine)
    yield Stores(
        engine=engine,
        models=MlflowModelStore(mlflow_uri, mlflow_uri, str(tmp_path / "artifacts")),
        lock_dir=tmp_path / "locks",
        code_version="test-commit",
    )


@pytest.fixture
def memory_stores(engine: Engine, tmp_path: Path) -> Iterator[Stores]:
    """The same, for tests that do not look at MLflow: the model store in memory."""
    import_synthetic(engine)
    yield Stores(
        engine=engine,
        models=InMemoryModelStore(),
        lock_dir=tmp_path / "locks",
        code_version="test-commit",
    )


def mlflow_store(stores: Stores) -> MlflowModelStore:
    assert isinstance(stores.models, MlflowModelStore)
    return stores.models


def logs(engine: Engine) -> list[ModelTrainingLog]:
    with engine.connect() as conn:
        rows = conn.execute(select(ModelTrainingLog).order_by(ModelTrainingLog.started_at)).all()
    return [ModelTrainingLog(**row._mapping) for row in rows]


def versions(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(ModelVersion)).mappings().all()
    return {row["version"]: dict(row) for row in rows}


def channels(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    """(channel, data) of the training events in the outbox, each checked against its model."""
    events = outbox_payloads(engine)
    return [(e.channel, e.to_data()) for e in events if e.channel.startswith("ml:training")]


def mlflow_versions(stores: Stores) -> dict[str, str]:
    found = mlflow_store(stores).client.search_model_versions("name = 'aifx-lstm'")
    return {str(v.version): str(v.current_stage) for v in found}


def promote(stores: Stores, version: str, as_of: datetime) -> None:
    change_stage(
        stores.engine,
        mlflow_store(stores),
        version,
        "production",
        as_of=as_of,
        reason="test",
        actor="test",
    )


def test_weekly_then_daily_gives_a_child_of_the_production_version(stores: Stores) -> None:
    config = tiny_training_config()
    weekly = train_full(stores, config, TRAIN_AS_OF)
    assert weekly.status == "completed" and weekly.version == "lstm-v1"
    assert weekly.metrics["train_samples"] > 0 and weekly.metrics["holdout_samples"] > 0
    assert mlflow_versions(stores) == {"1": "Staging"}
    promote(stores, "lstm-v1", TRAIN_AS_OF)

    daily = train_incremental(stores, config, WEDNESDAY)
    assert daily.status == "completed", daily.reason
    assert (daily.version, daily.parent_version) == ("lstm-v2", "lstm-v1")
    rows = versions(stores.engine)
    assert rows["lstm-v2"]["parent_version"] == "lstm-v1"
    assert rows["lstm-v2"]["status"] == "staging"
    assert rows["lstm-v1"]["status"] == "production"  # a new version never replaces it alone
    assert rows["lstm-v2"]["model_path"] == "models:/aifx-lstm/2"
    assert mlflow_versions(stores) == {"1": "Production", "2": "Staging"}

    # The child learned only from data its parent never saw, and both were scored on it.
    metrics = daily.metrics
    assert metrics["production_version"] == "lstm-v1"
    assert metrics["production_comparable"] is True
    assert metrics["production_holdout_samples"] == metrics["holdout_samples"]
    assert metrics["holdout_start"] > weekly_data_end(stores.engine)
    assert metrics["lift_over_production"] == pytest.approx(
        metrics["holdout_accuracy"] - metrics["production_holdout_accuracy"]
    )
    assert metrics["epochs_run"] == config.incremental_epochs

    full_log, daily_log = logs(stores.engine)
    assert (full_log.training_type, full_log.status) == ("full", "completed")
    assert (daily_log.training_type, daily_log.status) == ("incremental", "completed")
    assert daily_log.training_duration and daily_log.training_duration > 0
    assert daily_log.data_time_range and len(daily_log.data_time_range["dataset_hash"]) == 64
    assert rows["lstm-v2"]["training_log_id"] == daily_log.id

    # The child loads from the registry with the card that feeds it: the parent's scaler.
    child = stores.models.load(ModelVersion(**rows["lstm-v2"]))
    parent = stores.models.load(ModelVersion(**rows["lstm-v1"]))
    assert child.card.parent_version == "lstm-v1"
    assert child.card.scaler == parent.card.scaler
    # The weekly version's calibration and thresholds were fit on what it did not learn from
    # (validation and holdout); the child, which has no validation split, carries its parent's.
    assert parent.card.calibration is not None and parent.card.thresholds is not None
    assert (parent.card.calibration.a, parent.card.calibration.b) == (
        weekly.metrics["calibration_a"],
        weekly.metrics["calibration_b"],
    )
    assert parent.card.thresholds.samples == (
        weekly.metrics["validation_samples"] + weekly.metrics["holdout_samples"]
    )
    assert weekly.metrics["calibration_samples"] == parent.card.thresholds.samples
    assert (child.card.calibration, child.card.thresholds) == (
        parent.card.calibration,
        parent.card.thresholds,
    )

    events = channels(stores.engine)
    assert [c for c, _ in events].count("ml:training_started") == 2
    completed = [d for c, d in events if c == "ml:training_completed"]
    assert {(d["version"], d["status"]) for d in completed} == {
        ("lstm-v1", "completed"),
        ("lstm-v2", "completed"),
    }


def weekly_data_end(engine: Engine) -> str:
    first = logs(engine)[0]
    assert first.data_time_range is not None
    return str(first.data_time_range["end"])


def test_daily_without_production_trains_in_full_and_says_so(memory_stores: Stores) -> None:
    stores = memory_stores
    result = train_incremental(stores, tiny_training_config(), TRAIN_AS_OF)
    assert result.status == "completed"
    assert result.fell_back_to_full and result.reason and "full training instead" in result.reason
    assert result.training_type == "full" and result.parent_version is None
    assert [log.training_type for log in logs(stores.engine)] == ["full"]


def test_too_little_new_data_is_skipped_with_the_reason_and_no_version(stores: Stores) -> None:
    config = tiny_training_config()
    train_full(stores, config, TRAIN_AS_OF)
    promote(stores, "lstm-v1", TRAIN_AS_OF)
    # Monday 01:00: since the weekly run's data (Friday evening) only three candles arrived.
    result = train_incremental(stores, config, MONDAY)
    assert result.status == "skipped"
    assert result.reason and "too little data" in result.reason
    skipped = logs(stores.engine)[-1]
    assert (skipped.status, skipped.training_type) == ("skipped", "incremental")
    assert skipped.error_message == result.reason
    assert skipped.completed_at is not None
    assert set(versions(stores.engine)) == {"lstm-v1"}
    assert mlflow_versions(stores) == {"1": "Production"}
    statuses = [d["status"] for c, d in channels(stores.engine) if c == "ml:training_completed"]
    assert sorted(statuses) == ["completed", "skipped"]


def test_a_crash_while_training_leaves_a_failed_log_and_nothing_registered(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_training_config()
    train_full(stores, config, TRAIN_AS_OF)
    promote(stores, "lstm-v1", TRAIN_AS_OF)

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr("aifx_ml.training.runs.fit_model", explode)
    with pytest.raises(TrainingFailedError, match="out of memory"):
        train_incremental(stores, config, WEDNESDAY)
    failed = logs(stores.engine)[-1]
    assert failed.status == "failed"
    assert failed.error_message == "RuntimeError: out of memory (simulated)"
    assert set(versions(stores.engine)) == {"lstm-v1"}
    assert versions(stores.engine)["lstm-v1"]["status"] == "production"
    assert mlflow_versions(stores) == {"1": "Production"}
    client = mlflow_store(stores).client
    runs = client.search_runs([client.get_experiment_by_name("aifx-lstm").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]


def test_a_registration_the_table_refuses_is_taken_back_out_of_mlflow(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database went away (simulated)")

    monkeypatch.setattr("aifx_ml.training.lifecycle.record_version", refuse)
    with pytest.raises(TrainingFailedError, match="database went away"):
        train_full(stores, tiny_training_config(), TRAIN_AS_OF)
    assert versions(stores.engine) == {}
    assert mlflow_versions(stores) == {}
    assert [log.status for log in logs(stores.engine)] == ["failed"]


def test_mlflow_unreachable_ends_the_run_failed_with_the_error(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tracking server that refuses connections (nothing listens on the port)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    import_synthetic(engine)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nothing will listen on it
    uri = f"http://127.0.0.1:{port}"
    stores = Stores(engine, MlflowModelStore(uri, uri, str(tmp_path / "a")), tmp_path / "locks")
    with pytest.raises(TrainingFailedError, match="failed: MlflowException"):
        train_full(stores, tiny_training_config(), TRAIN_AS_OF)
    (failed,) = logs(engine)
    assert failed.status == "failed" and failed.completed_at is not None
    assert failed.error_message and f"127.0.0.1:{port}" in failed.error_message
    (completed,) = announced(engine, TrainingCompleted)
    assert (completed.status, completed.training_log_id) == ("failed", failed.id)


def test_mlflow_lost_mid_run_still_ends_the_run_failed(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store goes away after the run was opened: neither logging nor closing the run
    reaches it, and the table still records how the run ended."""

    def gone(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("MLflow went away (simulated)")

    monkeypatch.setattr(MlflowModelStore, "log_metrics", gone)
    monkeypatch.setattr(MlflowModelStore, "end_run", gone)
    with pytest.raises(TrainingFailedError, match="MLflow went away"):
        train_full(stores, tiny_training_config(), TRAIN_AS_OF)
    assert [(log.status, log.error_message) for log in logs(stores.engine)] == [
        ("failed", "ConnectionError: MLflow went away (simulated)")
    ]


def test_a_run_whose_process_died_is_closed_failed_by_the_next_run(
    memory_stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = memory_stores

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process stops here: nothing records how the run ended

    with monkeypatch.context() as patch:
        patch.setattr("aifx_ml.training.runs.fit_full", killed)
        with pytest.raises(KeyboardInterrupt):
            train_full(stores, tiny_training_config(), TRAIN_AS_OF)
    assert [log.status for log in logs(stores.engine)] == ["running"]

    result = train_full(stores, tiny_training_config(), WEDNESDAY)
    assert result.status == "completed"
    abandoned, done = logs(stores.engine)
    assert (abandoned.status, done.status) == ("failed", "completed")
    assert abandoned.error_message and abandoned.error_message.startswith(
        "abandoned: still running when the next lstm training started"
    )
    assert abandoned.completed_at == WEDNESDAY
    ended = {e.training_log_id: e.status for e in announced(stores.engine, TrainingCompleted)}
    assert ended == {abandoned.id: "failed", done.id: "completed"}


def test_a_second_run_of_the_same_model_type_does_not_overlap(memory_stores: Stores) -> None:
    stores = memory_stores
    with training_lock(stores.engine, stores.lock_dir, "lstm", timeout=0):
        result = train_full(stores, tiny_training_config(), TRAIN_AS_OF)
    assert result.status == "skipped"
    assert result.reason and "another lstm training run is in progress" in result.reason
    assert versions(stores.engine) == {}


def test_a_run_as_of_a_past_moment_sees_nothing_after_it(memory_stores: Stores) -> None:
    stores = memory_stores
    as_of = TRAIN_AS_OF - timedelta(days=7)
    result = train_full(stores, tiny_training_config(days=20), as_of)
    assert result.status == "completed"
    (log,) = logs(stores.engine)
    assert log.data_time_range is not None
    # The last candle read is the one that closed at as_of at the latest.
    last_open = datetime.fromisoformat(log.data_time_range["end"])
    assert last_open + timedelta(hours=1) <= as_of
    assert log.started_at == as_of


def test_mlflow_holds_params_curves_model_signature_and_card(
    stores: Stores, tmp_path: Path
) -> None:
    result = train_full(stores, tiny_training_config(epochs=3), TRAIN_AS_OF)
    assert result.mlflow_run_id
    client = mlflow_store(stores).client
    run = client.get_run(result.mlflow_run_id)
    params = run.data.params
    for key in ("dataset_hash", "git_commit", "pairs", "timeframes", "data_range", "epochs"):
        assert key in params, key
    assert params["git_commit"] == "test-commit"
    assert params["lstm_lstm_units"] == "[4, 2]"
    for key in ("holdout_accuracy", "holdout_auc", "holdout_log_loss", "holdout_brier"):
        assert key in run.data.metrics, key
    assert "lift_over_baseline" in run.data.metrics
    for key in ("calibration_a", "calibration_b", "calibration_log_loss_calibrated"):
        assert key in run.data.metrics, key
    assert run.data.tags["aifx.beats_baseline"] in ("True", "False")
    assert run.data.tags["aifx.version"] == "lstm-v1"
    epochs = client.get_metric_history(result.mlflow_run_id, "loss")
    assert [m.step for m in epochs] == list(range(result.metrics["epochs_run"]))
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"training_curves.png", "aifx_model.json"} <= artifacts
    card = json.loads(
        Path(client.download_artifacts(result.mlflow_run_id, "aifx_model.json", str(tmp_path)))
        .read_text()
    )  # fmt: skip
    assert card["calibration"] == {
        "method": "platt",
        "a": run.data.metrics["calibration_a"],
        "b": run.data.metrics["calibration_b"],
    }
    assert set(card["thresholds"]) >= {"buy", "sell", "buy_reference", "margin", "min_signals"}
    (tmp_path / "registered").mkdir()
    registered = download_version(client, "aifx-lstm", "1", tmp_path / "registered")
    model_info = Model.load(str(registered / "MLmodel"))
    assert model_info.signature is not None
    assert tuple(model_info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 8, 17)


def test_pointing_mlflow_at_a_store_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow writes the URIs it is given into the environment, where our settings read them:
    # a run must leave both MLflow's globals and the environment exactly as they were.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///outer.db")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    before = mlflow.get_tracking_uri()
    inner = f"sqlite:///{tmp_path / 'inner.db'}"
    store = MlflowModelStore(inner, inner, str(tmp_path / "artifacts"))
    run_id = store.start_run("lstm", "trace", {})
    store.log_params(run_id, {"epochs": 1})
    store.end_run(run_id, "FINISHED")
    # The run went to the inner store, through the store's own client only.
    assert store.client.get_run(run_id).info.status == "FINISHED"
    assert MlflowClient(tracking_uri=inner).get_run(run_id).data.params == {"epochs": "1"}
    assert mlflow.get_registry_uri() != inner
    assert not (tmp_path / "outer.db").exists()
    assert mlflow.get_tracking_uri() == before == "sqlite:///outer.db"
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///outer.db"
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_labeled_signals_known_by_as_of_join_the_training_examples(
    memory_stores: Stores,
) -> None:
    stores = memory_stores
    from aifx_ml.cli.signals import record_baseline_signals
    from aifx_ml.labeling.store import label_pending

    engine = stores.engine
    start = TRAIN_AS_OF - timedelta(days=40)
    record_baseline_signals(engine, None, "1h", start, TRAIN_AS_OF, TRAIN_AS_OF)
    label_pending(engine, TRAIN_AS_OF)
    with_signals = train_full(stores, tiny_training_config(include_signals=True), TRAIN_AS_OF)
    assert with_signals.status == "completed"
    assert with_signals.metrics["signal_samples"] > 0
    # The same run as of an earlier moment cannot use outcomes labeled after it.
    earlier = TRAIN_AS_OF - timedelta(days=3)
    past = train_full(stores, tiny_training_config(include_signals=True, days=20), earlier)
    assert past.status == "completed"
    assert past.metrics["signal_samples"] == 0
