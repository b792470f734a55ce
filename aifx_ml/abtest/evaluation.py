"""Looking at a running A/B test: its numbers per arm, the sequential decision, and acting on
it — a winner promoted (through the injected registry function), an inconclusive test ended
with Production unchanged, a test whose routing is broken flagged instead of trusted."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from aifx_ml.abtest.paired import evaluate_paired
from aifx_ml.abtest.stats import ArmStats, SequentialDecision, arm_summary, evaluate
from aifx_ml.abtest.store import (
    TestPlan,
    WinnerPromoter,
    complete_test,
    get_test,
    record_evaluation,
)
from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import ModelABTest, ShadowSignal, TradingSignal
from aifx_ml.domain import TestMode


@dataclass(frozen=True)
class TestLook:
    """One look at a test: per-arm numbers and what the sequential test concludes."""

    __test__ = False  # not a pytest class, whatever its name says

    test_id: uuid.UUID
    arms: dict[str, ArmStats]
    decision: SequentialDecision
    looked_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "test_id": str(self.test_id),
            "looked_at": self.looked_at.isoformat(),
            "arms": {k: v.as_dict() for k, v in self.arms.items()},
            "decision": self.decision.as_dict(),
        }


def test_outcomes(engine: Engine, test: ModelABTest) -> pd.DataFrame:
    """Every signal the test routed: variant, outcome, pnl and its cluster (pair and UTC day:
    signals of one pair on one day move together, so they are not independent)."""
    with session_factory(engine)() as session:
        rows = session.execute(
            select(
                TradingSignal.model_version,
                TradingSignal.actual_outcome,
                TradingSignal.actual_pnl_percent,
                TradingSignal.pair,
                TradingSignal.created_at,
                TradingSignal.routing_key,
            ).where(
                TradingSignal.ab_test_id == test.id,
                # A signal of neither arm (recorded by hand, say) says nothing about either.
                TradingSignal.model_version.in_((test.model_a_version, test.model_b_version)),
                # Computed on candles a caller sent (prices of their choosing): not evidence.
                TradingSignal.verified,
            )
        ).all()
    frame = pd.DataFrame(
        rows, columns=["version", "outcome", "pnl", "pair", "created_at", "routing_key"]
    )
    return pd.DataFrame(
        {
            "variant": np.where(frame["version"] == test.model_b_version, "b", "a").astype(object),
            "outcome": frame["outcome"].astype(object),
            "pnl": frame["pnl"].astype("float64"),
            "cluster": _pair_day(frame),
            # Routing is sticky per key: the sample-ratio check counts keys, not signals.
            "routing_key": frame["routing_key"].astype(object),
        }
    )


def shadow_outcomes(engine: Engine, test: ModelABTest) -> pd.DataFrame:
    """Every request a shadow test mirrored, one row per answer: A's served signal and B's
    unseen one, joined by `request` (the served signal's id), clustered like `test_outcomes`."""
    with session_factory(engine)() as session:
        served = session.execute(
            select(
                TradingSignal.id,
                TradingSignal.actual_outcome,
                TradingSignal.actual_pnl_percent,
                TradingSignal.pair,
                TradingSignal.created_at,
            ).where(
                TradingSignal.ab_test_id == test.id,
                TradingSignal.model_version == test.model_a_version,
                TradingSignal.verified,
            )
        ).all()
        shadow = session.execute(
            select(
                ShadowSignal.served_signal_id,
                ShadowSignal.actual_outcome,
                ShadowSignal.actual_pnl_percent,
                ShadowSignal.pair,
                ShadowSignal.created_at,
            ).where(
                ShadowSignal.ab_test_id == test.id,
                ShadowSignal.model_version == test.model_b_version,
            )
        ).all()
    columns = ["request", "outcome", "pnl", "pair", "created_at"]
    frame = pd.concat(
        [
            pd.DataFrame(served, columns=columns).assign(variant="a"),
            pd.DataFrame(shadow, columns=columns).assign(variant="b"),
        ],
        ignore_index=True,
    )
    return pd.DataFrame(
        {
            "variant": frame["variant"].astype(object),
            "outcome": frame["outcome"].astype(object),
            "pnl": frame["pnl"].astype("float64"),
            "cluster": _pair_day(frame),
            "request": frame["request"].astype(str).astype(object),
        }
    )


def _pair_day(frame: pd.DataFrame) -> pd.Series:
    """Each signal's cluster, "pair|UTC day": signals of one pair on one day share a market."""
    day = pd.to_datetime(frame["created_at"], utc=True).dt.strftime("%Y-%m-%d")
    return (frame["pair"] + "|" + day).astype(object)


def look(engine: Engine, test: ModelABTest, now: datetime) -> TestLook:
    """The test's numbers and the sequential decision as of `now` (nothing is changed)."""
    plan = TestPlan.from_dict(test.config)
    previous = (test.metrics or {}).get("decision", {}).get("p_value")
    expired = now - test.created_at > timedelta(days=plan.max_days)
    previous_p = float(previous) if isinstance(previous, int | float) else 1.0
    if test.mode == TestMode.SHADOW:
        outcomes = shadow_outcomes(engine, test)
        decision = evaluate_paired(
            outcomes, plan.sequential(), previous_p=previous_p, expired=expired
        )
    else:
        outcomes = test_outcomes(engine, test)
        decision = evaluate(
            outcomes, test.traffic_split, plan.sequential(), previous_p=previous_p, expired=expired
        )
    return TestLook(test.id, arm_summary(outcomes), decision, now)


def evaluate_test(
    engine: Engine, test_id: uuid.UUID | str, now: datetime, promote: WinnerPromoter
) -> TestLook:
    """Look at an active test and act: a winner is promoted and the test completed; at the
    maximum sample or duration (or a guardrail breach) the test ends with no winner; a sample
    ratio mismatch is recorded and the test left running, untrusted, for a person to fix."""
    test = get_test(engine, test_id)
    seen = look(engine, test, now)
    decision = seen.decision
    record_evaluation(engine, test.id, seen.as_dict(), now)
    if decision.status == "winner" and decision.winner is not None:
        version = test.model_b_version if decision.winner == "b" else test.model_a_version
        complete_test(
            engine,
            test.id,
            as_of=now,
            winner=version,
            reason=decision.reason,
            metrics=seen.as_dict(),
            promote=promote,
        )
    elif decision.status in ("inconclusive", "guardrail"):
        complete_test(
            engine, test.id, as_of=now, winner=None, reason=decision.reason, metrics=seen.as_dict()
        )
    return seen
