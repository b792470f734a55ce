"""A/B evaluation (deployment `ab-evaluation`, hourly): look at every active test and act —
promote a winner, end an inconclusive test, flag broken routing."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aifx_ml.abtest.evaluation import evaluate_test
from aifx_ml.abtest.store import describe, get_test, list_tests
from aifx_ml.alerts.rules import ab_decided_alert
from aifx_ml.config import Settings, load_settings
from aifx_ml.db.engine import engine_for
from aifx_ml.domain import TestStatus
from aifx_ml.training.config import TRAINING
from flows.common import IO_RETRIES, raise_alerts_task, reconcile_task, relay_task
from flows.runner import FROM_SETTINGS
from registry.abtest import complete_with_winner
from registry.hygiene import retire_stale_candidates
from registry.mlflow_store import MlflowModelStore


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def active_tests_task(settings: Settings) -> list[str]:
    with engine_for(settings.db_url) as engine:
        return [str(t.id) for t in list_tests(engine, TestStatus.ACTIVE)]


@task(cache_policy=NO_CACHE)
def evaluate_task(
    settings: Settings, test_id: str, as_of: datetime, keep_waiting: int | None = None
) -> dict[str, Any]:
    """One test: the sequential decision, acted on through the registry; with `keep_waiting`,
    a challenger that did not win leaves Staging (`registry.hygiene`)."""
    store = MlflowModelStore.from_settings(settings)
    with engine_for(settings.db_url) as engine:
        seen = evaluate_test(
            engine,
            test_id,
            as_of,
            partial(complete_with_winner, engine, store, actor="flow ab-evaluation"),
        )
        ended = get_test(engine, test_id)  # as the look left it: decided or not
        test = describe(ended)
        if keep_waiting is not None and ended.status != TestStatus.ACTIVE and ended.model_type:
            # A challenger that did not win leaves Staging with the test's reason.
            retire_stale_candidates(
                engine, store, ended.model_type, as_of=as_of, actor="flow ab-evaluation",
                keep=keep_waiting,
            )  # fmt: skip
    decision = seen.decision
    get_run_logger().info("A/B test %s: %s — %s", test_id, decision.status, decision.reason)
    return {**seen.as_dict(), "test": test}


@flow(name="ab-evaluation", log_prints=False, task_runner=FROM_SETTINGS)
def ab_evaluation_flow(
    as_of: datetime | None = None, keep_waiting: int | None = TRAINING.keep_waiting
) -> dict[str, Any]:
    """Evaluate every active A/B test as of `as_of` (default: now, UTC); a challenger that
    did not win leaves Staging, and at most `keep_waiting` candidates wait (None: Staging is
    left as it is)."""
    settings = load_settings()
    moment = as_of or datetime.now(UTC)
    reconcile_task(settings, "flow ab-evaluation")
    looks = {
        test_id: evaluate_task(settings, test_id, moment, keep_waiting)
        for test_id in active_tests_task(settings)
    }
    decided = [
        look["test"] for look in looks.values() if look["test"]["status"] != TestStatus.ACTIVE
    ]
    raise_alerts_task(settings, [ab_decided_alert(test) for test in decided], moment)
    relay_task(settings)
    return {
        test_id: {"status": look["decision"]["status"], "reason": look["decision"]["reason"]}
        for test_id, look in looks.items()
    }


if __name__ == "__main__":
    ab_evaluation_flow()
