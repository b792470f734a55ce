"""Label pending signals whose horizon has elapsed (deployment: every 5 minutes)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aifx_ml.config import load_settings
from aifx_ml.db.engine import engine_for, ensure_schema
from aifx_ml.labeling.rules import DEFAULT_THRESHOLD
from aifx_ml.labeling.store import LabelReport, label_pending
from flows.common import IO_RETRIES, alerts_task, reconcile_task, relay_task
from flows.runner import FROM_SETTINGS


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def label_task(database_url: str, embedded: bool, as_of: datetime, threshold: float) -> LabelReport:
    """The database is the only I/O here, so this is the one task that retries."""
    with engine_for(database_url) as engine:
        ensure_schema(engine, auto_upgrade=embedded)
        return label_pending(engine, as_of, threshold)


@flow(name="label-signals", log_prints=False, task_runner=FROM_SETTINGS)
def label_signals_flow(
    threshold: float = DEFAULT_THRESHOLD, as_of: datetime | None = None
) -> LabelReport:
    """Label every pending signal whose horizon has elapsed by `as_of` (default: now)."""
    settings = load_settings()
    # One moment for the whole run: labeling and the alert rules judge the same "now".
    moment = as_of or datetime.now(UTC)
    reconcile_task(settings, "flow label-signals")
    report = label_task(settings.db_url, settings.is_embedded, moment, threshold)
    get_run_logger().info(
        "labeled %d of %d pending signal(s): %s", report.labeled, report.examined, report.outcomes
    )
    alerts_task(settings, moment)
    relay_task(settings)
    return report


if __name__ == "__main__":
    label_signals_flow()
