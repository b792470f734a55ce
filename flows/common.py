"""Tasks every flow shares: reconcile the registry at the start, relay events at the end."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aifx_ml.abtest.store import TestPlan
from aifx_ml.alerts.notify import check_and_alert, raise_alert_safely
from aifx_ml.config import Settings
from aifx_ml.db.engine import engine_for, ensure_schema
from aifx_ml.errors import RefusedError
from aifx_ml.events.relay import relay_outbox
from aifx_ml.training.config import ChallengerOffer, ChallengerPolicy
from registry.challenger import offer_challenger
from registry.mlflow_store import MlflowModelStore
from registry.reconcile import reconcile


def retry_unless_refused(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task unless a guard refused it (`RefusedError`): that fails the same way
    every time until a person acts, and says how."""
    return not isinstance(state.data, RefusedError)


# The one retry policy, of every task whose I/O (database, registry, Prefect API) may fail for a
# moment; tests/code/test_defaults_agree.py checks that every task that retries uses it.
IO_RETRIES: dict[str, Any] = {"retries": 3, "retry_delay_seconds": [5, 30, 120]}
IO_RETRIES["retry_condition_fn"] = retry_unless_refused


def _now() -> datetime:
    return datetime.now(UTC)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def reconcile_task(settings: Settings, actor: str) -> list[str]:
    """Bring MLflow's registry in line with `model_versions` before anything reads it."""
    with engine_for(settings.db_url) as engine:
        ensure_schema(engine, auto_upgrade=settings.is_embedded)
        fixes = reconcile(engine, MlflowModelStore.from_settings(settings), _now(), actor)
    logger = get_run_logger()
    for fix in fixes:
        logger.warning("reconciled %s %s: %s", fix.kind, fix.version, fix.detail)
    return [f"{f.kind} {f.version}: {f.detail}" for f in fixes]


@task(cache_policy=NO_CACHE)
def relay_task(settings: Settings) -> dict[str, Any]:
    """Publish what the flow announced; with Redis away the events wait for the next relay."""
    with engine_for(settings.db_url) as engine:
        report = relay_outbox(engine, settings.redis_url, now=_now)
    logger = get_run_logger()
    if not report.configured:
        logger.info("no Redis configured: %d event(s) wait in the outbox", report.pending)
    elif report.error:
        logger.warning("events not relayed, they wait in the outbox: %s", report.error)
    return asdict(report)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def challenger_task(
    settings: Settings, version: str, as_of: datetime, actor: str, policy: ChallengerPolicy
) -> ChallengerOffer:
    """Gate a new version, then as `policy` says: it refreshes an old Production version, or
    is tried against Production (a shadow or split test), or waits; Staging is tidied."""
    with engine_for(settings.db_url) as engine:
        outcome = offer_challenger(
            engine,
            MlflowModelStore.from_settings(settings),
            version,
            as_of=as_of,
            actor=actor,
            split=policy.split,
            plan=TestPlan.from_dict(policy.plan) if policy.plan else None,
            mode=policy.mode,
            refresh=policy.refresh,
            keep_waiting=policy.keep_waiting,
        )
    get_run_logger().info("challenger %s: %s %s", version, outcome.action, outcome.detail)
    return ChallengerOffer(
        version=outcome.version,
        action=outcome.action,
        ab_test_id=str(outcome.ab_test_id) if outcome.ab_test_id else None,
        detail=outcome.detail,
    )


@task(cache_policy=NO_CACHE)
def alerts_task(settings: Settings, as_of: datetime) -> list[str]:
    """Raise what the training, data-quality and outbox rules find, retry failed deliveries.
    Never fails the flow: a delivery problem is a recorded alert row."""
    with engine_for(settings.db_url) as engine:
        raised = check_and_alert(engine, settings, as_of)
    return [f"{a.status} {a.alert_key}" for a in raised]


@task(cache_policy=NO_CACHE)
def raise_alerts_task(settings: Settings, drafts: list[Any], as_of: datetime) -> list[str]:
    """Raise the given alert drafts (A/B decisions, evaluation findings); never fails."""
    with engine_for(settings.db_url) as engine:
        raised = [raise_alert_safely(engine, settings, d, as_of=as_of) for d in drafts]
    return [f"{a.status} {a.alert_key}" for a in raised if a is not None]
