"""The scheduled flows a replay runs, bound to its parameters: the same flow objects the
deployments in prefect.yaml serve, called with the simulated moment as `as_of`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Any

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from aifx_ml.config import Settings
from aifx_ml.evaluation.monthly import wants_retrain
from aifx_ml.replay.loop import Job
from aifx_ml.replay.plan import ReplayParams
from flows.ab_evaluation import ab_evaluation_flow
from flows.daily_incremental import daily_incremental_flow
from flows.monthly_evaluation import monthly_evaluation_flow
from flows.weekly_full import weekly_full_flow


def replay_jobs(params: ReplayParams) -> dict[str, Job]:
    """Job name (as in aifx_ml.replay.schedule.SCHEDULES) → the flow run at a moment."""
    model = params.model
    training: dict[str, Any] = {
        "pairs": list(params.pairs),
        "timeframes": list(params.timeframes),
        "batch_size": model.batch_size,
        "seed": params.seed,
        "auto_challenger": True,
        "challenger_mode": params.challenger_mode,
        "challenger_split": params.challenger_split,
        "refresh_days": params.refresh_days,
        "keep_waiting": params.keep_waiting,
        "ab_test_plan": params.test_plan(),
        "days": model.days,
        "window": model.window,
        "lstm_units": list(model.lstm_units),
        "dense_units": model.dense_units,
        "learning_rate": model.learning_rate,
    }

    def weekly(at: datetime) -> Mapping[str, Any]:
        return asdict(weekly_full_flow(epochs=model.epochs, as_of=at, **training))

    def daily(at: datetime) -> Mapping[str, Any]:
        return asdict(
            daily_incremental_flow(
                epochs=model.incremental_epochs, full_epochs=model.epochs, as_of=at, **training
            )
        )

    def ab(at: datetime) -> Mapping[str, Any]:
        return {"looks": ab_evaluation_flow(as_of=at, keep_waiting=params.keep_waiting)}

    def monthly(at: datetime) -> Mapping[str, Any]:
        # The deployment starts `weekly-full` through the Prefect API when the verdict is
        # retrain; a replay has no deployments served, so it runs the flow itself, at once.
        result = asdict(monthly_evaluation_flow(as_of=at, trigger_retrain=False))
        if params.train and any(wants_retrain(e) for e in result["evaluations"]):
            result["retrain"] = weekly(at)
        return result

    jobs: dict[str, Job] = {"ab-evaluation": ab, "monthly-evaluation": monthly}
    if params.train:
        jobs |= {"weekly-full": weekly, "daily-incremental": daily}
    return jobs


@contextmanager
def replay_runtime(settings: Settings) -> Iterator[None]:
    """Run flows in this process against `settings`' stores.

    The flows read their settings from the environment, so the stores are exported for the
    duration. Flow-run heartbeats are off: they tell a server a long run is alive, and each
    run would wait up to a second for the heartbeat thread to wake (1 s of a 0.08 s run).
    """
    exported = {
        "AIFX_DATA_DIR": str(settings.data_dir),
        "AIFX_DATABASE_URL": settings.db_url,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.registry_uri,
        "AIFX_ARTIFACT_ROOT": settings.artifact_location,
        "AIFX_REDIS_URL": settings.redis_url or "",
    }
    before = {name: os.environ.get(name) for name in exported}
    os.environ.update(exported)
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
