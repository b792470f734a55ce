"""The automatic challenger: what becomes of a new version.

- With no Production version yet, one that passes the offline gate becomes it.
- A fresh full training **refreshes** a Production version older than the refresh age when
  the holdout does not show it worse than Production, nor than the best baseline, by more
  than the refresh margin (`aifx_ml.evaluation.refresh`): in a drifting market a fresher
  model is the better bet unless the data say otherwise. A test still running against the
  old Production version is cancelled, its challenger superseded.
- Otherwise a version that passes the gate is tried live against Production: in a shadow
  test (`TRAINING.challenger_mode`, the default: it answers every request unseen, compared
  pair by pair) or a split test; unless a test of its model type already runs, and then it
  waits.
- Either way the Staging hygiene runs (`registry.hygiene`): losers of ended tests and the
  candidates beyond the newest `keep_waiting` are archived, with the reason.

Refreshes (`refresh=RefreshPolicy(age=None)`) and the hygiene (`keep_waiting=None`) can be
turned off; they are on by default, as in the flows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import Engine

from aifx_ml.abtest.store import DEFAULT_SPLIT, TestPlan, active_test, cancel_test, create_test
from aifx_ml.db.models import ModelABTest
from aifx_ml.domain import ModelStatus, TestMode
from aifx_ml.evaluation.gate import DEFAULT_MARGIN, DEFAULT_MIN_SAMPLES, GateDecision
from aifx_ml.evaluation.refresh import RefreshDecision, RefreshPolicy
from aifx_ml.models.versions import get_version, production_version
from aifx_ml.training.config import TRAINING
from registry.abtest import mark_challenger
from registry.hygiene import Retired, retire_stale_candidates
from registry.mlflow_store import MlflowModelStore
from registry.promotion import CandidateEvaluation, evaluate_candidate
from registry.stages import change_stage


@dataclass(frozen=True)
class ChallengerOutcome:
    """What became of a new version: promoted, refreshed in, tried in a test, or neither."""

    version: str
    action: str  # promoted | refreshed | ab_test_started | test_running | refused
    decision: GateDecision | None
    ab_test_id: uuid.UUID | None = None
    detail: str = ""
    refresh: RefreshDecision | None = None
    retired: tuple[Retired, ...] = field(default=())


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
    mode: TestMode | str = TRAINING.challenger_mode,
    refresh: RefreshPolicy = RefreshPolicy(),  # noqa: B008  (frozen: one shared default)
    keep_waiting: int | None = TRAINING.keep_waiting,
) -> ChallengerOutcome:
    """Decide what becomes of `version` (see the module docstring), then tidy Staging
    (`keep_waiting=None`: leave Staging as it is)."""
    outcome = _offer(
        engine, store, version, as_of, actor, split, margin, min_samples, plan, mode, refresh
    )
    if outcome.refresh is not None and not outcome.refresh.passed:  # say why it did not
        why = "; ".join(outcome.refresh.reasons)
        outcome = replace(outcome, detail=f"not refreshed ({why}); {outcome.detail}")
    if keep_waiting is None:
        return outcome
    retired = retire_stale_candidates(
        engine, store, get_version(engine, version).model_type,
        as_of=as_of, actor=actor, keep=keep_waiting,
    )  # fmt: skip
    return replace(outcome, retired=tuple(retired))


def _offer(
    engine: Engine,
    store: MlflowModelStore,
    version: str,
    as_of: datetime,
    actor: str,
    split: float,
    margin: float,
    min_samples: int,
    plan: TestPlan | None,
    mode: TestMode | str,
    refresh: RefreshPolicy,
) -> ChallengerOutcome:
    row = get_version(engine, version)
    running = active_test(engine, row.model_type)
    current = production_version(engine, row.model_type)
    evaluation: CandidateEvaluation | None = None
    declined: RefreshDecision | None = None
    full_training = row.parent_version is None
    if (
        refresh.age is not None
        and current is not None
        and full_training
        and as_of - current.created_at >= refresh.age
    ):
        evaluation = evaluate_candidate(
            engine, store, version, as_of, margin=margin, min_samples=min_samples
        )
        check = evaluation.refresh(refresh.margin, refresh.level)
        if check.passed:
            return _refresh(engine, store, version, current.version, evaluation, check,
                            running, as_of, actor)  # fmt: skip
        declined = check
    if running is not None:
        return ChallengerOutcome(
            version, "test_running", None, running.id, f"A/B test {running.test_name!r} runs",
            refresh=declined,
        )  # fmt: skip
    if evaluation is None:
        evaluation = evaluate_candidate(
            engine, store, version, as_of, margin=margin, min_samples=min_samples
        )
    decision, production = evaluation.decision, evaluation.production
    if not decision.passed:
        return ChallengerOutcome(
            version, "refused", decision, None, "; ".join(decision.reasons), refresh=declined
        )
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
    shadow = mode == TestMode.SHADOW
    test = create_test(
        engine,
        name=f"{version} vs {production}",
        model_a_version=production,
        model_b_version=version,
        traffic_split=None if shadow else split,
        as_of=as_of,
        plan=plan,
        mode=mode,
    )
    mark_challenger(engine, store, test)
    return ChallengerOutcome(version, "ab_test_started", decision, test.id, refresh=declined)


def _refresh(
    engine: Engine,
    store: MlflowModelStore,
    version: str,
    production: str,
    evaluation: CandidateEvaluation,
    check: RefreshDecision,
    running: ModelABTest | None,
    as_of: datetime,
    actor: str,
) -> ChallengerOutcome:
    """Promote `version` with reason `refresh`, ending a test of the version it replaces."""
    gap = check.production
    reason = (
        f"refresh: {production} is older than the refresh age and {version} is not shown worse "
        f"(accuracy {gap.difference:+.4f} vs Production, upper {check.level:.0%} bound "
        f"{gap.upper:+.4f} >= -{check.margin:.4f}, on {gap.samples} holdout samples)"
    )
    test_id = None
    if running is not None:
        test_id = running.id
        why = f"superseded: {version} refreshed {production}"
        cancel_test(engine, test_id, as_of=as_of, reason=why)
        if running.model_b_version != version:  # its challenger will not be tried again
            change_stage(
                engine, store, running.model_b_version, ModelStatus.ARCHIVED,
                as_of=as_of, reason=f"{why} during its test", actor=actor, ab_test_id=test_id,
            )  # fmt: skip
    change_stage(
        engine,
        store,
        version,
        ModelStatus.PRODUCTION,
        as_of=as_of,
        reason=reason,
        actor=actor,
        details={"refresh": check.as_dict(), "gate": evaluation.decision.as_dict()},
    )
    return ChallengerOutcome(
        version, "refreshed", evaluation.decision, test_id, reason, refresh=check
    )
