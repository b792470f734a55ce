"""Prefect tasks shared by the two training flows: thin wrappers over `aifx_ml.training`.

Loading is mapped per (pair, timeframe), so with `AIFX_TASK_RUNNER=dask` (flows/runner.py)
it fans out over the cluster; the reads retry, the training itself does not (a failed run is
recorded, not repeated blindly).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from prefect import task, unmapped
from prefect.cache_policies import NO_CACHE

from aifx_ml.config import Settings, git_commit
from aifx_ml.db.engine import engine_for, ensure_schema
from aifx_ml.domain import TrainingStatus, TrainingType
from aifx_ml.training.config import ChallengerPolicy, Stores, TrainingConfig, TrainingResult
from aifx_ml.training.data import load_series, load_start, samples_since, stored_series
from aifx_ml.training.runs import train_full, train_incremental
from aifx_ml.training.sweep import CandidateFit, fit_candidate, widest
from flows.common import IO_RETRIES, alerts_task, challenger_task, reconcile_task, relay_task
from flows.runner import share_cores_on_dask_worker
from registry.mlflow_store import MlflowModelStore


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def plan_task(
    settings: Settings, config: TrainingConfig, training_type: str, as_of: datetime
) -> tuple[list[tuple[str, str]], datetime]:
    """The series to read and where reading starts (a window before the first sample)."""
    with engine_for(settings.db_url) as engine:
        ensure_schema(engine, auto_upgrade=settings.is_embedded)
        since = samples_since(engine, config, training_type, as_of)
        return stored_series(engine, config), load_start(since, config)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def load_series_task(
    settings: Settings, pair: str, timeframe: str, start: datetime, as_of: datetime
) -> pd.DataFrame:
    """Candles, indicators and target of one series, closed by `as_of`."""
    with engine_for(settings.db_url) as engine:
        return load_series(engine, pair, timeframe, start, as_of)


@task(cache_policy=NO_CACHE)
def fit_candidate_task(
    index: int,
    config: TrainingConfig,
    candles: pd.DataFrame,
    signals: pd.DataFrame | None,
    since: datetime,
) -> CandidateFit:
    """One candidate of a sweep, fitted wherever the task runner puts it (plain values in and
    out). Not retried by Prefect: a worker lost in the middle is Dask's to recompute."""
    share_cores_on_dask_worker()
    return fit_candidate(index, config, candles, signals, since)


def fit_on_task_runner(
    configs: Sequence[TrainingConfig],
    candles: pd.DataFrame,
    signals: pd.DataFrame | None,
    since: datetime,
) -> list[CandidateFit]:
    """The sweep's candidates as mapped tasks of the running flow (its task runner: threads,
    or the Dask cluster the settings name); the first failure fails the training run."""
    futures = fit_candidate_task.map(
        list(range(len(configs))),
        list(configs),
        unmapped(candles),
        unmapped(signals),
        unmapped(since),
    )
    return list(futures.result())


@task(cache_policy=NO_CACHE)
def train_task(
    settings: Settings,
    config: TrainingConfig,
    training_type: str,
    as_of: datetime,
    frames: list[pd.DataFrame],
    candidates: list[TrainingConfig] | None = None,
) -> TrainingResult:
    """One training run on the loaded series; its record says how it ended (a full training
    with several `candidates` sweeps them on the flow's task runner first)."""
    with engine_for(settings.db_url) as engine:
        actor = (
            "flow weekly-full" if training_type == TrainingType.FULL else "flow daily-incremental"
        )
        models = MlflowModelStore.from_settings(settings)
        stores = Stores.from_settings(settings, engine, models, git_commit(), actor)
        candles = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if training_type == TrainingType.FULL:
            result = train_full(
                stores,
                config,
                as_of,
                candles=candles,
                candidates=candidates or (),
                fit_candidates=fit_on_task_runner,
            )
        else:
            result = train_incremental(stores, config, as_of, candles=candles)
        return result


def training_steps(
    settings: Settings,
    config: TrainingConfig,
    training_type: str,
    as_of: datetime,
    actor: str,
    challenger: ChallengerPolicy | None,
    candidates: Sequence[TrainingConfig] = (),
) -> TrainingResult:
    """The steps both training flows take: reconcile, read every series (mapped), train (a
    sweep of `candidates`, when several, mapped too), offer the new version as a challenger
    (unless `challenger` is None), relay the events."""
    reconcile_task(settings, actor)
    series, start = plan_task(settings, widest(config, candidates), training_type, as_of)
    frames = load_series_task.map(
        unmapped(settings),
        [p for p, _ in series],
        [t for _, t in series],
        unmapped(start),
        unmapped(as_of),
    )
    result = train_task(
        settings, config, training_type, as_of, frames.result(), list(candidates) or None
    )
    if challenger is not None and result.status == TrainingStatus.COMPLETED:
        assert result.version is not None
        # Passes the offline gate: tried live against Production (or becomes the first one).
        result.challenger = challenger_task(settings, result.version, as_of, actor, challenger)
    alerts_task(settings, as_of)  # a failed run, or a second skip in a row, reaches people
    relay_task(settings)
    return result
