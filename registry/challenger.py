"""The automatic challenger: a new Staging version that passes the offline gate is tried live
against Production in an A/B test (or, with no Production version yet, becomes it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from aifx_ml.abtest.store import DEFAULT_SPLIT, TestPlan, active_test, create_test
from aifx_ml.domain import ModelStatus
from aifx_ml.evaluation.gate import DEFAULT_MARGIN, DEFAULT_MIN_SAMPLES, GateDecision
from aifx_ml.models.versions import get_version
from registry.abtest import mark_challenger
from registry.mlflow_store import MlflowModelStore
from registry.promotion import evaluate_candidate
from registry.stages import change_stage


@dataclass(frozen=True)
class ChallengerOutcome:
    """What became of a new version: promoted, tried in a test, or neither (and why)."""

    version: str
    action: str  # promoted | ab_test_started | test_running | refused
    decision: GateDecision | None
    ab_test_id: uuid.UUID | None = None
    detail: str = ""


def offer_challenger(
    engine: Engine,
    store: MlflowModelStore,
    version: str,
    *,
    as_of: datetime,
    actor: str,
    split: float = DEFAULT_SPLIT,
    margin: float = DEFAULT_MARGIN,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    plan: TestPlan | None = None,
) -> ChallengerOutcome:
    """Gate `version`; on a pass start an A/B test against Production (split to the new one),
    unless a test of its model type is already running."""
    row = get_version(engine, version)
    running = active_test(engine, row.model_type)
    if running is not None:
        return ChallengerOutcome(
            version, "test_running", None, running.id, f"A/B test {running.test_name!r} runs"
        )
    decision, production = evaluate_candidate(
        engine, store, version, as_of, margin=margin, min_samples=min_samples
    )
    if not decision.passed:
        return ChallengerOutcome(version, "refused", decision, None, "; ".join(decision.reasons))
    if production is None:
        change_stage(
            engine,
            store,
            version,
            ModelStatus.PRODUCTION,
            as_of=as_of,
            reason="first model: passed the promotion gate against the baselines",
            actor=actor,
            details={"gate": decision.as_dict()},
        )
        return ChallengerOutcome(version, "promoted", decision)
    test = create_test(
        engine,
        name=f"{version} vs {production}",
        model_a_version=production,
        model_b_version=version,
        traffic_split=split,
        as_of=as_of,
        plan=plan,
    )
    mark_challenger(engine, store, test)
    return ChallengerOutcome(version, "ab_test_started", decision, test.id)
