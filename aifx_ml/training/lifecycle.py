"""The bookkeeping around a training run, whatever the training does.

A run holds its model type's lock, writes a `running` row in `model_training_log` with an
`ml:training_started` event, and ends `completed` (the version registered in MLflow in stage
Staging and recorded in `model_versions`, in the same transaction as the log row), `skipped`
(with the reason, no version) or `failed` (with the error, nothing registered, Production
untouched), announced on `ml:training_completed`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aifx_ml.db.engine import transaction
from aifx_ml.db.models import ModelTrainingLog
from aifx_ml.domain import TrainingStatus, TrainingType
from aifx_ml.events.outbox import enqueue
from aifx_ml.events.schemas import TrainingCompleted, TrainingStarted
from aifx_ml.features.dataset import Dataset, Scaler, Split
from aifx_ml.models.calibration import Platt, Thresholds
from aifx_ml.models.card import ModelCard
from aifx_ml.models.lstm import LSTMConfig
from aifx_ml.models.store import version_label
from aifx_ml.models.versions import record_version
from aifx_ml.training.config import (
    Stores,
    TrainingConfig,
    TrainingFailedError,
    TrainingResult,
    TrainingSkipped,
)
from aifx_ml.training.fit import EpochCallback
from aifx_ml.training.lock import TrainingBusyError, training_lock

if TYPE_CHECKING:
    from aifx_ml.training.sweep import CandidateFit

log = logging.getLogger(__name__)
OnEpoch = Callable[[int, dict[str, float]], None]


@dataclass
class Run:
    stores: Stores
    config: TrainingConfig
    training_type: str
    as_of: datetime
    result: TrainingResult
    started: float = field(default_factory=time.monotonic)
    store_run: str | None = None  # the run's id in the model store while it is open

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@contextmanager
def training_run(
    stores: Stores, config: TrainingConfig, training_type: str, as_of: datetime
) -> Iterator[Run]:
    run = Run(
        stores, config, training_type, as_of, TrainingResult(TrainingStatus.RUNNING, training_type)
    )
    try:
        lock = training_lock(stores.engine, stores.lock_dir, config.model_type, config.lock_timeout)
        lock.__enter__()
    except TrainingBusyError as busy:
        run.result.training_log_id = _start_log(run)
        _finish_log(run, TrainingStatus.SKIPPED, reason=str(busy))
        yield run  # the body sees the status skipped and must not train
        return
    try:
        _close_abandoned(run)
        run.result.training_log_id = _start_log(run)
        try:
            yield run
        except TrainingSkipped as skipped:
            _end_store_run_quietly(run, "KILLED")
            _finish_log(run, TrainingStatus.SKIPPED, reason=str(skipped))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            # The model store or the database may be what failed: each step is tried, and
            # the failure raised whatever happens to the record (a row left `running` is
            # closed by the next run of the type, see `_close_abandoned`).
            _end_store_run_quietly(run, "FAILED")
            try:
                _finish_log(run, TrainingStatus.FAILED, reason=reason)
            except Exception:
                log.exception("the failed training could not be recorded as failed")
            raise TrainingFailedError(
                f"{training_type} training of {config.model_type} failed: {reason}"
            ) from exc
    finally:
        lock.__exit__(None, None, None)


def _end_store_run_quietly(run: Run, status: str) -> None:
    try:
        end_store_run(run, status)
    except Exception:  # the model store is away: the table still records how the run ended
        log.exception("the model store run %s could not be closed as %s", run.store_run, status)
        run.store_run = None


def _close_abandoned(run: Run) -> None:
    """Close as failed every `running` row of this model type: the caller holds the type's
    training lock, so no process is running them (theirs ended, killed or cut off, before it
    recorded how)."""
    with transaction(run.stores.engine) as session:
        abandoned = (
            session.execute(
                select(ModelTrainingLog).where(
                    ModelTrainingLog.model_type == run.config.model_type,
                    ModelTrainingLog.status == TrainingStatus.RUNNING,
                )
            )
            .scalars()
            .all()
        )
        for row in abandoned:
            reason = (
                f"abandoned: still running when the next {row.model_type} training started at "
                f"{run.as_of.isoformat()}; the process that ran it ended without recording how"
            )
            row.status, row.error_message, row.completed_at = (
                TrainingStatus.FAILED,
                reason,
                max(run.as_of, row.started_at),
            )
            enqueue(
                session,
                TrainingCompleted(
                    training_log_id=row.id,
                    training_type=TrainingType(row.training_type),
                    model_type=row.model_type,
                    status=TrainingStatus.FAILED.value,
                    version=None,
                    parent_version=None,
                    reason=reason,
                ),
                run.as_of,
            )


def _start_log(run: Run) -> uuid.UUID:
    log_id = uuid.uuid4()
    with transaction(run.stores.engine) as session:
        session.add(
            ModelTrainingLog(
                id=log_id,
                training_type=run.training_type,
                model_type=run.config.model_type,
                status=TrainingStatus.RUNNING,
                started_at=run.as_of,
            )
        )
        enqueue(
            session,
            TrainingStarted(
                training_log_id=log_id,
                training_type=TrainingType(run.training_type),
                model_type=run.config.model_type,
            ),
            run.as_of,
        )
    return log_id


def _finish_log(
    run: Run,
    status: TrainingStatus,
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
            TrainingCompleted(
                training_log_id=run.result.training_log_id,
                training_type=TrainingType(run.training_type),
                model_type=run.config.model_type,
                status=status.value,
                version=run.result.version,
                parent_version=run.result.parent_version,
                reason=reason,
            ),
            run.as_of,
        )
    run.result.status, run.result.reason = status, reason


def end_store_run(run: Run, status: str) -> None:
    """Close the run in the model store (FINISHED, FAILED or KILLED), if one is open."""
    if run.store_run is not None:
        run.stores.models.end_run(run.store_run, status)
        run.store_run = None


def log_candidates(run: Run, fits: Sequence[CandidateFit], chosen: CandidateFit) -> None:
    """Each candidate of a sweep as a nested run of this one (MLflow's `mlflow.parentRunId`):
    its parameters, curves and validation scores, and whether it was the one chosen."""
    assert run.store_run is not None
    models = run.stores.models
    for fit in fits:
        child = models.start_run(
            run.config.model_type,
            f"candidate-{fit.index}",
            {
                "mlflow.parentRunId": run.store_run,
                "aifx.candidate": str(fit.index),
                "aifx.chosen": str(fit is chosen).lower(),
            },
        )
        models.log_params(child, {**fit.params(), "candidate": fit.index})
        models.log_metrics(child, fit.metrics())
        models.log_curves(child, fit.history)
        models.end_run(child, "FINISHED")
    models.set_tags(run.store_run, {"aifx.chosen_candidate": str(chosen.index)})


def start_store_run(run: Run, dataset: Dataset, split: Split, extra: dict[str, Any]) -> None:
    """Open the run in the model store with everything that says what it trains on."""
    models = run.stores.models
    run.store_run = models.start_run(
        run.config.model_type,
        f"{run.training_type}-{pd.Timestamp(run.as_of):%Y%m%d-%H%M}",
        {"aifx.training_type": run.training_type, "aifx.model_type": run.config.model_type},
    )
    run.result.mlflow_run_id = run.store_run
    models.log_params(
        run.store_run,
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
        },
    )


def complete(
    run: Run,
    model: Any,
    card: ModelCard,
    dataset: Dataset,
    split: Split,
    history: dict[str, list[float]],
    metrics: dict[str, Any],
    windows: np.ndarray[Any, Any],
) -> None:
    """Log the result, register it in Staging and close the log, all or nothing."""
    models, run_id = run.stores.models, run.store_run
    assert run_id is not None, "start_store_run first"
    example = np.take(windows, dataset.samples.rows[split.holdout[:4]], axis=0)
    models.log_metrics(
        run_id,
        {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and np.isfinite(v)},
    )
    models.set_tags(run_id, {"aifx.beats_baseline": str(metrics.get("beats_baseline"))})
    models.log_curves(run_id, history)
    registered = models.register(run_id, model, card, example, {"parent": str(card.parent_version)})
    version = version_label(run.config.model_type, registered.number)
    run.result.version = version

    def record(session: Session) -> None:
        record_version(
            session,
            version=version,
            model_type=run.config.model_type,
            model_path=registered.model_path,
            training_log_id=run.result.training_log_id or uuid.uuid4(),
            parent_version=card.parent_version,
            metrics=metrics,
            artifact_sha256=registered.sha256,
            as_of=run.as_of,
            actor=run.stores.actor,
        )

    try:
        _finish_log(
            run,
            TrainingStatus.COMPLETED,
            also=record,
            metrics=metrics,
            dataset_size=int(len(split.train) + len(split.validation) + len(split.holdout)),
            data_time_range={**dataset.time_range(), "dataset_hash": dataset.content_hash()},
            mlflow_run_id=run.result.mlflow_run_id,
        )
    except Exception:
        # The table refused the version: take it out of the store too, nothing half-registered.
        run.result.version = None
        models.unregister(run.config.model_type, registered.number)
        raise
    models.set_tags(run_id, {"aifx.version": version})
    run.result.metrics = metrics
    end_store_run(run, "FINISHED")


def model_card(
    config: TrainingConfig,
    lstm: LSTMConfig,
    scaler: Scaler,
    dataset: Dataset,
    as_of: datetime,
    parent: str | None,
    calibration: Platt | None = None,
    thresholds: Thresholds | None = None,
) -> ModelCard:
    """What rebuilds and feeds the model: saved with it in the model store."""
    return ModelCard(
        model_type=config.model_type,
        architecture=lstm.to_dict(),
        features=tuple(dataset.feature_names),
        window=dataset.window,
        scaler=scaler,
        pairs=tuple(dataset.pairs),
        timeframes=tuple(dataset.timeframes),
        dataset_hash=dataset.content_hash(),
        data_time_range=dataset.time_range(),
        trained_as_of=as_of,
        parent_version=parent,
        calibration=calibration,
        thresholds=thresholds,
    )


def epoch_logger(run: Run, on_epoch: OnEpoch | None) -> EpochCallback:
    """Per-epoch metrics (loss, accuracy, AUC, their validation twins, learning rate) to the
    run, and to `on_epoch` (a progress bar)."""

    def log(epoch: int, logs: dict[str, float]) -> None:
        if run.store_run is not None:
            run.stores.models.log_metrics(run.store_run, logs, step=epoch)
        if on_epoch is not None:
            on_epoch(epoch, logs)

    return EpochCallback(log)
