"""The bookkeeping around a training run, whatever the training does.

A run holds its model type's lock, writes a `running` row in `model_training_log` with an
`ml:training_started` event, and ends `completed` (the version registered in MLflow in stage
Staging and recorded in `model_versions`, in the same transaction as the log row), `skipped`
(with the reason, no version) or `failed` (with the error, nothing registered, Production
untouched), announced on `ml:training_completed`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sqlalchemy import update
from sqlalchemy.orm import Session

from aifx_ml.db.engine import transaction
from aifx_ml.db.models import ModelTrainingLog
from aifx_ml.events.outbox import enqueue
from aifx_ml.features.dataset import Dataset, Scaler, Split
from aifx_ml.models.lstm import LSTMConfig
from aifx_ml.training import tracking
from aifx_ml.training.config import (
    Stores,
    TrainingConfig,
    TrainingFailedError,
    TrainingResult,
    TrainingSkipped,
)
from aifx_ml.training.fit import EpochCallback
from aifx_ml.training.lock import TrainingBusyError, training_lock
from registry.versions import (
    record_version,
    register_in_mlflow,
    registered_name,
    unregister_in_mlflow,
    version_label,
)

OnEpoch = Callable[[int, dict[str, float]], None]


@dataclass
class Run:
    stores: Stores
    config: TrainingConfig
    training_type: str
    as_of: datetime
    result: TrainingResult
    started: float = field(default_factory=time.monotonic)
    mlflow_run: Any = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@contextmanager
def training_run(
    stores: Stores, config: TrainingConfig, training_type: str, as_of: datetime
) -> Iterator[Run]:
    run = Run(stores, config, training_type, as_of, TrainingResult("running", training_type))
    try:
        lock = training_lock(stores.engine, stores.lock_dir, config.model_type, config.lock_timeout)
        lock.__enter__()
    except TrainingBusyError as busy:
        run.result.training_log_id = _start_log(run)
        _finish_log(run, "skipped", reason=str(busy))
        yield run  # the body sees status "skipped" and must not train
        return
    try:
        run.result.training_log_id = _start_log(run)
        with tracking.mlflow_stores(stores.tracking_uri, stores.registry_uri):
            try:
                yield run
            except TrainingSkipped as skipped:
                end_mlflow(run, "KILLED")
                _finish_log(run, "skipped", reason=str(skipped))
            except Exception as exc:
                end_mlflow(run, "FAILED")
                _finish_log(run, "failed", reason=f"{type(exc).__name__}: {exc}")
                raise TrainingFailedError(
                    f"{training_type} training of {config.model_type} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    finally:
        lock.__exit__(None, None, None)


def _start_log(run: Run) -> uuid.UUID:
    log_id = uuid.uuid4()
    with transaction(run.stores.engine) as session:
        session.add(
            ModelTrainingLog(
                id=log_id,
                training_type=run.training_type,
                model_type=run.config.model_type,
                status="running",
                started_at=run.as_of,
            )
        )
        enqueue(
            session,
            "ml:training_started",
            {
                "training_log_id": str(log_id),
                "training_type": run.training_type,
                "model_type": run.config.model_type,
            },
            run.as_of,
        )
    return log_id


def _finish_log(
    run: Run,
    status: str,
    reason: str | None = None,
    also: Callable[[Session], None] | None = None,
    **values: Any,
) -> None:
    """Close the log row and announce it; `also` writes in the same transaction."""
    duration = run.elapsed()
    with transaction(run.stores.engine) as session:
        if also is not None:
            also(session)
        session.execute(
            update(ModelTrainingLog)
            .where(ModelTrainingLog.id == run.result.training_log_id)
            .values(
                status=status,
                error_message=reason,
                training_duration=duration,
                completed_at=run.as_of + timedelta(seconds=duration),
                **values,
            )
        )
        enqueue(
            session,
            "ml:training_completed",
            {
                "training_log_id": str(run.result.training_log_id),
                "training_type": run.training_type,
                "model_type": run.config.model_type,
                "status": status,
                "version": run.result.version,
                "parent_version": run.result.parent_version,
                "reason": reason,
            },
            run.as_of,
        )
    run.result.status, run.result.reason = status, reason


def end_mlflow(run: Run, status: str) -> None:
    if run.mlflow_run is not None:
        mlflow.end_run(status=status)
        run.mlflow_run = None


def start_mlflow(run: Run, dataset: Dataset, split: Split, extra: dict[str, Any]) -> None:
    client = mlflow.MlflowClient()
    experiment = tracking.experiment_for(client, run.config.model_type, run.stores.artifact_root)
    run.mlflow_run = mlflow.start_run(
        experiment_id=experiment,
        run_name=f"{run.training_type}-{pd.Timestamp(run.as_of):%Y%m%d-%H%M}",
        tags={"aifx.training_type": run.training_type, "aifx.model_type": run.config.model_type},
    )
    run.result.mlflow_run_id = run.mlflow_run.info.run_id
    mlflow.log_params(
        tracking.flat_params(
            {
                **run.config.params(),
                "training_type": run.training_type,
                "as_of": run.as_of.isoformat(),
                "pairs": list(dataset.pairs),
                "timeframes": list(dataset.timeframes),
                "data_range": dataset.time_range(),
                "dataset_hash": dataset.content_hash(),
                "git_commit": run.stores.code_version,
                "split": split.describe(dataset.samples),
                **extra,
            }
        )
    )


def complete(
    run: Run,
    model: Any,
    card: dict[str, Any],
    dataset: Dataset,
    split: Split,
    history: dict[str, list[float]],
    metrics: dict[str, Any],
    windows: np.ndarray[Any, Any],
) -> None:
    """Log the result, register it in Staging and close the log, all or nothing."""
    example = np.take(windows, dataset.samples.rows[split.holdout[:4]], axis=0)
    mlflow.log_metrics(
        {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and np.isfinite(v)}
    )
    mlflow.set_tags({"aifx.beats_baseline": str(metrics.get("beats_baseline"))})
    tracking.log_training_curves(history)
    model_uri = tracking.log_model_with_card(model, card, example)
    client = mlflow.MlflowClient()
    mlflow_version, sha = register_in_mlflow(
        client,
        run.config.model_type,
        model_uri,
        run.result.mlflow_run_id or "",
        {"parent": str(card.get("parent_version"))},
    )
    version = version_label(run.config.model_type, mlflow_version)
    run.result.version = version

    def record(session: Session) -> None:
        record_version(
            session,
            version=version,
            model_type=run.config.model_type,
            model_path=f"models:/{registered_name(run.config.model_type)}/{mlflow_version}",
            training_log_id=run.result.training_log_id or uuid.uuid4(),
            parent_version=card.get("parent_version"),
            metrics=metrics,
            artifact_sha256=sha,
            as_of=run.as_of,
            actor=run.stores.actor,
        )

    try:
        _finish_log(
            run,
            "completed",
            also=record,
            metrics=metrics,
            dataset_size=int(len(split.train) + len(split.validation) + len(split.holdout)),
            data_time_range={**dataset.time_range(), "dataset_hash": dataset.content_hash()},
            mlflow_run_id=run.result.mlflow_run_id,
        )
    except Exception:
        # The table refused the version: take it out of MLflow too, nothing half-registered.
        run.result.version = None
        unregister_in_mlflow(client, run.config.model_type, mlflow_version)
        raise
    mlflow.set_tag("aifx.version", version)
    run.result.metrics = metrics
    end_mlflow(run, "FINISHED")


def model_card(
    config: TrainingConfig,
    lstm: LSTMConfig,
    scaler: Scaler,
    dataset: Dataset,
    as_of: datetime,
    parent: str | None,
) -> dict[str, Any]:
    """What rebuilds and feeds the model: saved with it in MLflow."""
    return {
        "model_type": config.model_type,
        "architecture": lstm.to_dict(),
        "features": list(dataset.feature_names),
        "window": dataset.window,
        "scaler": scaler.to_dict(),
        "pairs": list(dataset.pairs),
        "timeframes": list(dataset.timeframes),
        "target": "1 if the close at the label horizon is above the window's last close",
        "dataset_hash": dataset.content_hash(),
        "data_time_range": dataset.time_range(),
        "trained_as_of": as_of.isoformat(),
        "parent_version": parent,
    }


def epoch_logger(on_epoch: OnEpoch | None) -> EpochCallback:
    def log(epoch: int, logs: dict[str, float]) -> None:
        tracking.log_epoch(epoch, logs)
        if on_epoch is not None:
            on_epoch(epoch, logs)

    return EpochCallback(log)
