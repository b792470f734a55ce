"""Refresh promotions and Staging hygiene on both databases (`registry.challenger`,
`registry.hygiene`).

The holdout scores are arranged (sample by sample, which calls were right), so each test
knows whether the rule must refresh; the rule's statistics are tested in
tests/code/test_refresh_rule.py. Everything the registry does with the decision is real:
stage changes, their history and events, the test cancelled, the versions archived.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select

from aifx_ml.abtest.store import complete_test, create_test, get_test
from aifx_ml.db.models import ModelStageHistory, ModelVersion
from aifx_ml.evaluation.gate import promotion_gate
from aifx_ml.evaluation.holdout import HoldoutScores
from aifx_ml.evaluation.metrics import holdout_metrics
from aifx_ml.evaluation.refresh import RefreshPolicy
from aifx_ml.events.schemas import ModelDeployed
from registry import challenger
from registry.challenger import offer_challenger
from registry.promotion import CandidateEvaluation
from tests.event_payloads import announced
from tests.memory_registry import T0, World

pytestmark = pytest.mark.integration
DAYS, PER_DAY = 14, 48  # a two-week holdout of two hourly pairs


@pytest.fixture
def world(engine: Engine) -> World:
    return World(engine)


def scores_for(
    candidate: str, production: str, *, candidate_right: float, production_right: float = 0.55
) -> Any:
    """An evaluate_candidate stand-in: holdout calls right at the given rates (the candidate
    copies Production's calls where it can), a weak baseline, and a gate that refuses."""

    def evaluate(engine: Engine, store: Any, version: str, as_of: datetime, **_: Any) -> Any:
        assert version == candidate
        rng = np.random.default_rng(0)
        n = DAYS * PER_DAY
        prod = (rng.random(n) < production_right).astype(float)
        cand = prod.copy()
        if candidate_right < production_right:  # it loses some of Production's right calls
            keep = rng.random(n) < candidate_right / production_right
            cand = prod * keep
        y = np.ones(n)
        metrics = {name: holdout_metrics(y, right) for name, right in (("c", cand), ("p", prod))}
        baselines = {"persistence": holdout_metrics(y, np.zeros(n))}
        gate = promotion_gate(metrics["c"], metrics["p"], baselines, margin=0.5)
        scores = HoldoutScores(
            {candidate: metrics["c"], production: metrics["p"]},
            baselines,
            {"samples": n},
            {candidate: cand, production: prod},
            {"persistence": np.zeros(n)},
            np.repeat(np.arange(DAYS), PER_DAY),
        )
        return CandidateEvaluation(candidate, production, gate, scores)

    return evaluate


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())


def history(engine: Engine, version: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(ModelStageHistory)
                .where(ModelStageHistory.version == version)
                .order_by(ModelStageHistory.changed_at)
            )
        )


def offer(world: World, version: str, as_of: datetime, **kw: Any) -> Any:
    """offer_challenger as the flows call it: refreshes and the Staging hygiene on (their
    defaults)."""
    return offer_challenger(world.engine, world.store, version, as_of=as_of, actor="t", **kw)


def test_a_fresh_version_not_shown_worse_refreshes_an_old_production(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = world.register(), world.register()
    world.promote(old)
    monkeypatch.setattr(
        challenger, "evaluate_candidate", scores_for(new, old, candidate_right=0.55)
    )
    outcome = offer(world, new, T0 + timedelta(days=8))  # Production is 9 days old
    assert outcome.action == "refreshed"
    assert outcome.refresh is not None and outcome.refresh.passed
    assert outcome.decision is not None and not outcome.decision.passed  # no superiority
    assert statuses(world.engine) == {old: "archived", new: "production"}
    change = history(world.engine, new)[-1]
    assert change.to_status == "production" and change.reason.startswith("refresh: ")
    assert change.details["refresh"]["versus_production"]["difference"] == 0.0
    assert change.details["refresh"]["margin"] == 0.01
    deployed = announced(world.engine, ModelDeployed)
    assert deployed[-1].version == new and deployed[-1].reason.startswith("refresh: ")


def test_no_refresh_of_a_young_production_or_for_a_worse_version(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = world.register(), world.register()
    world.promote(old)
    monkeypatch.setattr(
        challenger, "evaluate_candidate", scores_for(new, old, candidate_right=0.55)
    )
    young = offer(world, new, T0 + timedelta(days=3))  # Production is 4 days old
    assert young.action == "refused" and young.refresh is None
    monkeypatch.setattr(
        challenger, "evaluate_candidate", scores_for(new, old, candidate_right=0.40)
    )
    worse = offer(world, new, T0 + timedelta(days=8))
    assert worse.action == "refused"
    # The outcome says why no refresh happened, with the numbers, before the gate's reasons.
    assert worse.refresh is not None and not worse.refresh.passed
    assert worse.detail.startswith("not refreshed (accuracy trails production by 0.14")
    assert statuses(world.engine) == {old: "production", new: "staging"}
    off = offer(world, new, T0 + timedelta(days=30), refresh=RefreshPolicy(age=None))
    assert off.action == "refused" and off.refresh is None


def test_a_refresh_ends_the_test_of_the_version_it_replaces(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, tried, new = world.register(), world.register(), world.register()
    world.promote(old)
    test = create_test(
        world.engine, name="t", model_a_version=old, model_b_version=tried,
        traffic_split=None, as_of=T0, mode="shadow",
    )  # fmt: skip
    monkeypatch.setattr(
        challenger, "evaluate_candidate", scores_for(new, old, candidate_right=0.55)
    )
    outcome = offer(world, new, T0 + timedelta(days=8))
    assert outcome.action == "refreshed" and outcome.ab_test_id == test.id
    ended = get_test(world.engine, test.id)
    assert (
        ended.status == "cancelled" and ended.ended_reason == f"superseded: {new} refreshed {old}"
    )
    assert statuses(world.engine) == {old: "archived", tried: "archived", new: "production"}
    assert "during its test" in history(world.engine, tried)[-1].reason


def test_at_most_n_candidates_wait_and_losers_leave_staging(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = world.register()
    world.promote(champion)
    loser = world.register()
    test = create_test(
        world.engine, name="t", model_a_version=champion, model_b_version=loser,
        traffic_split=None, as_of=T0, mode="shadow",
    )  # fmt: skip
    complete_test(
        world.engine, test.id, as_of=T0, winner=None, reason="maximum duration: no winner"
    )
    waiting = [world.register() for _ in range(4)]
    newest = world.register()
    monkeypatch.setattr(
        challenger, "evaluate_candidate", scores_for(newest, champion, candidate_right=0.40)
    )
    outcome = offer(world, newest, T0 + timedelta(days=2))
    assert outcome.action == "refused"
    retired = {r.version: r.reason for r in outcome.retired}
    assert set(retired) == {loser, waiting[0], waiting[1]}
    assert retired[loser].startswith("lost shadow test 't'")
    assert "maximum duration" in retired[loser]
    assert retired[waiting[0]] == "superseded: 3 newer candidate(s) of lstm wait in Staging"
    staging = sorted(v for v, s in statuses(world.engine).items() if s == "staging")
    assert staging == sorted([waiting[2], waiting[3], newest])
    assert history(world.engine, loser)[-1].ab_test_id == test.id
