"""Import the candle files dropped in the settings' folder (deployment: every minute)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aifx_ml.config import load_settings
from aifx_ml.data.watch import import_dropped
from aifx_ml.db.engine import engine_for, ensure_schema
from flows.common import relay_task
from flows.runner import FROM_SETTINGS


@task(cache_policy=NO_CACHE)
def import_task(database_url: str, embedded: bool, folder: str, as_of: datetime) -> list[str]:
    """Not retried: each file is its own transaction and leaves the folder once handled, so the
    next run takes what this one could not."""
    with engine_for(database_url) as engine:
        ensure_schema(engine, auto_upgrade=embedded)
        handled = import_dropped(engine, Path(folder), as_of)
    return [
        f"{h.name}: rejected ({h.error})"
        if h.report is None
        else f"{h.name}: {h.report.accepted} accepted, {h.report.duplicates} duplicate, "
        f"{h.report.quarantined} quarantined"
        for h in handled
    ]


@flow(name="market-data", log_prints=False, task_runner=FROM_SETTINGS)
def market_data_flow(folder: str | None = None) -> list[str]:
    """Import every candle file waiting in `folder` (default: AIFX_DROP_DIR, or the data
    folder's drop/), each in its own transaction, then move it to processed/ or rejected/."""
    settings = load_settings()
    assert settings.drop_dir is not None
    where = Path(folder) if folder else settings.drop_dir
    where.mkdir(parents=True, exist_ok=True)
    lines = import_task(settings.db_url, settings.is_embedded, str(where), datetime.now(UTC))
    logger = get_run_logger()
    for line in lines:
        logger.info(line)
    relay_task(settings)
    return lines


if __name__ == "__main__":
    market_data_flow()
