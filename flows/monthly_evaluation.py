"""Monthly evaluation (deployment `monthly-evaluation`, the 1st of each month 02:00 UTC): an
Evidently drift and quality report per Production (and recently archived) version, stored
and logged; a recommendation per model type, and — when asked — a weekly full training
started at once where it says retrain. The versions are evaluated as mapped tasks — a score
per version × series, then a verdict per version — so a Dask task runner spreads them over
its workers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from aifx_ml.alerts.rules import evaluation_alerts
from aifx_ml.config import Settings, load_settings
from aifx_ml.db.engine import engine_for
from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.monthly import Thresholds, previous_month, wants_retrain
from aifx_ml.evaluation.monthly_run import (
    Evaluated,
    MonthlyFlowResult,
    Series,
    SeriesScores,
    candle_reader,
    evaluate_scored,
    evaluation_window,
    plan_version,
    run_monthly,
    score_series,
    version_row,
)
from aifx_ml.evaluation.params import EVALUATION
from flows.common import IO_RETRIES, raise_alerts_task, reconcile_task, relay_task
from flows.runner import FROM_SETTINGS, share_cores_on_dask_worker
from registry.mlflow_store import MlflowModelStore

WEEKLY_DEPLOYMENT = "weekly-full/weekly-full"


@task(cache_policy=NO_CACHE)
def plan_version_task(settings: Settings, version: str) -> list[Series] | str:
    """The series a version is evaluated on (from its card), or why it cannot be."""
    share_cores_on_dask_worker()
    with engine_for(settings.db_url) as engine:
        try:
            return plan_version(
                MlflowModelStore.from_settings(settings), version_row(engine, version)
            )
        except InvalidInputError as exc:
            return str(exc)


@task(cache_policy=NO_CACHE)
def score_series_task(
    settings: Settings, month: str, as_of: datetime, version: str, series: Series
) -> SeriesScores:
    """One version's samples on one series, scored wherever the task runner puts it (it
    reads its own candles and loads its own model)."""
    share_cores_on_dask_worker()
    start, end = evaluation_window(month, as_of)
    with engine_for(settings.db_url) as engine:
        row = version_row(engine, version)
        loaded = MlflowModelStore.from_settings(settings).load(row)
        return score_series(loaded, row, series, candle_reader(engine), start, end)


@task(cache_policy=NO_CACHE)
def evaluate_version_task(
    settings: Settings,
    month: str,
    as_of: datetime,
    thresholds: Thresholds,
    version: str,
    scores: list[SeriesScores],
) -> Evaluated:
    """One version's verdict and Evidently report from its series' scores."""
    share_cores_on_dask_worker()
    with engine_for(settings.db_url) as engine:
        try:
            evaluation, html = evaluate_scored(
                engine, version_row(engine, version), scores, month, as_of, thresholds
            )
        except InvalidInputError as exc:
            return Evaluated(version, error=str(exc))
        return Evaluated(version, evaluation, html)


@task(cache_policy=NO_CACHE)
def evaluate_task(
    settings: Settings, month: str, as_of: datetime, thresholds: Thresholds
) -> list[dict[str, Any]]:
    def mapped(versions: Sequence[str]) -> list[Evaluated]:
        """Tasks of the flow's task runner (threads, or Dask): a plan per version, a score per
        version × series, then a verdict per version."""
        plans = plan_version_task.map(unmapped(settings), list(versions)).result()
        planned = [(v, p) for v, p in zip(versions, plans, strict=True) if not isinstance(p, str)]
        jobs = [(v, series) for v, found in planned for series in found]
        scores = score_series_task.map(
            unmapped(settings),
            unmapped(month),
            unmapped(as_of),
            [v for v, _ in jobs],
            [series for _, series in jobs],
        ).result()
        judged = evaluate_version_task.map(
            unmapped(settings),
            unmapped(month),
            unmapped(as_of),
            unmapped(thresholds),
            [v for v, _ in planned],
            [[s for s in scores if s.version == v] for v, _ in planned],
        ).result()
        by_version = {e.version: e for e in judged}
        for version, plan in zip(versions, plans, strict=True):
            if isinstance(plan, str):  # not evaluated: the reason, as evaluate_each gives it
                by_version[version] = Evaluated(version, error=plan)
        return [by_version[v] for v in versions]

    with engine_for(settings.db_url) as engine:
        result = run_monthly(
            engine,
            month,
            MlflowModelStore.from_settings(settings),
            report_dir=settings.monthly_reports_dir,
            as_of=as_of,
            thresholds=thresholds,
            evaluate=mapped,
        )
    logger = get_run_logger()
    for version, error in result.errors.items():
        logger.warning("%s not evaluated: %s", version, error)
    return [
        {**e.summary(), "report_path": str(result.reports[e.version])} for e in result.evaluations
    ]


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def trigger_retrain_task(model_type: str) -> str:
    """Start the weekly full training deployment now (it trains every stored series)."""
    from prefect.client.schemas.objects import FlowRun  # noqa: PLC0415  (the Prefect client: only when a retrain is started)
    from prefect.deployments import run_deployment  # noqa: PLC0415  (the Prefect client: only when a retrain is started)

    # Called from sync code it runs to completion and returns the flow run, not a coroutine.
    run = cast(
        FlowRun, run_deployment(WEEKLY_DEPLOYMENT, timeout=0, tags=["aifx", "monthly-retrain"])
    )
    get_run_logger().info("started %s for %s: flow run %s", WEEKLY_DEPLOYMENT, model_type, run.id)
    return str(run.id)


@flow(name="monthly-evaluation", log_prints=False, task_runner=FROM_SETTINGS)
def monthly_evaluation_flow(
    month: str | None = None,
    as_of: datetime | None = None,
    trigger_retrain: bool = EVALUATION.trigger_retrain,
    accuracy_drop: float = EVALUATION.accuracy_drop,
    auc_drop: float = EVALUATION.auc_drop,
    drift_share: float = EVALUATION.drift_share,
) -> MonthlyFlowResult:
    """Evaluate `month` (default: the month before `as_of`, i.e. the one that just ended);
    every other default is EVALUATION's (aifx_ml/evaluation/params.py)."""
    settings = load_settings()
    moment = as_of or datetime.now(UTC)
    month = month or previous_month(moment)
    thresholds = Thresholds(accuracy_drop=accuracy_drop, auc_drop=auc_drop, drift_share=drift_share)
    reconcile_task(settings, "flow monthly-evaluation")
    evaluations = evaluate_task(settings, month, moment, thresholds)
    retrains: dict[str, str] = {}
    for e in evaluations:
        if trigger_retrain and wants_retrain(e):
            try:
                retrains[e["model_type"]] = trigger_retrain_task(e["model_type"])
            except Exception as exc:  # noqa: BLE001  (recorded; the evaluation stands)
                retrains[e["model_type"]] = f"failed: {type(exc).__name__}: {exc}"
                get_run_logger().error("could not start a retraining: %s", exc)
    findings = [draft for e in evaluations for draft in evaluation_alerts(e)]
    raise_alerts_task(settings, findings, moment)  # degradation and drift reach people
    relay_task(settings)
    return MonthlyFlowResult(month, evaluations, retrains)


if __name__ == "__main__":
    monthly_evaluation_flow()
