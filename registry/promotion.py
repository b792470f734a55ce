"""Gated promotion: score the candidate and the Production model on the same recent holdout,
let `aifx_ml.evaluation.gate` decide, and change stages only on a pass (or a forced,
explained override). The gate numbers are stored with the stage change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine

from aifx_ml.domain import ModelStatus
from aifx_ml.errors import RegistryError
from aifx_ml.evaluation.gate import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_SAMPLES,
    GateDecision,
    promotion_gate,
)
from aifx_ml.evaluation.holdout import HoldoutScores, score_on_holdout
from aifx_ml.evaluation.refresh import DEFAULT_LEVEL, RefreshDecision, refresh_decision
from aifx_ml.evaluation.refresh import DEFAULT_MARGIN as DEFAULT_REFRESH_MARGIN
from aifx_ml.models.store import ModelStore
from aifx_ml.models.versions import get_version, production_version
from aifx_ml.training.config import training_config
from aifx_ml.training.data import load_training_candles
from registry.mlflow_store import MlflowModelStore
from registry.stages import Clock, StageResult, change_stage

BASELINE_LOOKBACK = timedelta(days=30)


@dataclass
class PromotionOutcome:
    """The gate's decision, and the stage change if one was made."""

    version: str
    decision: GateDecision | None
    production_version: str | None
    promoted: bool
    forced: bool
    stage: StageResult | None = None


@dataclass(frozen=True)
class CandidateEvaluation:
    """The gate's decision for a candidate and what it was computed from: the holdout scores
    of the candidate, the Production version (if any) and the baselines, sample by sample."""

    candidate: str
    production: str | None
    decision: GateDecision
    scores: HoldoutScores

    def refresh(
        self, margin: float = DEFAULT_REFRESH_MARGIN, level: float = DEFAULT_LEVEL
    ) -> RefreshDecision:
        """Would the candidate refresh Production (`aifx_ml.evaluation.refresh`)?"""
        if self.production is None:
            raise RegistryError("a refresh replaces a Production version: there is none")
        return refresh_decision(
            self.scores.correct[self.candidate],
            self.scores.correct[self.production],
            self.scores.baseline_correct,
            self.scores.clusters,
            margin=margin,
            level=level,
            min_samples=self.decision.min_samples,
        )


def evaluate_candidate(
    engine: Engine,
    store: ModelStore,
    version: str,
    as_of: datetime,
    *,
    margin: float = DEFAULT_MARGIN,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> CandidateEvaluation:
    """The gate decision for `version` against the current Production version, as of `as_of`.

    The holdout starts where the newer of the two stopped learning (each version's own
    holdout start), so neither has trained on it, and ends at `as_of`.
    """
    candidate_row = get_version(engine, version)
    if candidate_row.status == ModelStatus.PRODUCTION:
        raise RegistryError(f"model version {version} is already in Production")
    current = production_version(engine, candidate_row.model_type)
    rows = [candidate_row] + ([current] if current is not None else [])
    starts = [_holdout_start(r.version, r.metrics or {}) for r in rows]
    holdout_start = max(starts)
    card = store.load(candidate_row)
    models = {candidate_row.version: (card.model, card.card)}
    if current is not None:
        champion = store.load(current)
        models[current.version] = (champion.model, champion.card)
    config = training_config(card.card.pairs, card.card.timeframes)
    candles = load_training_candles(
        engine, config, (holdout_start - BASELINE_LOOKBACK).to_pydatetime(), as_of
    )
    scores = score_on_holdout(models, candles, holdout_start)
    decision = promotion_gate(
        scores.models[candidate_row.version],
        scores.models[current.version] if current is not None else None,
        scores.baselines,
        margin=margin,
        min_samples=min_samples,
        holdout=scores.holdout,
    )
    return CandidateEvaluation(
        version, current.version if current is not None else None, decision, scores
    )


def promote(
    engine: Engine,
    store: MlflowModelStore,
    version: str,
    *,
    as_of: datetime,
    actor: str,
    margin: float = DEFAULT_MARGIN,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    force_reason: str | None = None,
    clock: Clock | None = None,
) -> PromotionOutcome:
    """Promote `version` if it passes the gate; with `force_reason`, promote it anyway and
    store the reason next to the numbers it overrode. The gate scores as of `as_of`; the
    change is stamped by `clock` when it commits (see `registry.stages.commit_stamp`)."""
    if force_reason is not None and not force_reason.strip():
        raise RegistryError('a forced promotion needs a reason: --force --reason "..."')
    evaluation = evaluate_candidate(
        engine, store, version, as_of, margin=margin, min_samples=min_samples
    )
    decision, current = evaluation.decision, evaluation.production
    outcome = PromotionOutcome(version, decision, current, promoted=False, forced=False)
    if not decision.passed and force_reason is None:
        return outcome
    forced = not decision.passed
    reason = f"forced: {force_reason}" if forced else f"passed the promotion gate (margin {margin})"
    outcome.stage = change_stage(
        engine,
        store,
        version,
        ModelStatus.PRODUCTION,
        as_of=as_of,
        reason=reason,
        actor=actor,
        details={"gate": decision.as_dict(), "forced": forced},
        clock=clock,
    )
    outcome.promoted, outcome.forced = True, forced
    return outcome


def _holdout_start(version: str, metrics: dict[str, object]) -> pd.Timestamp:
    start = metrics.get("holdout_start")
    if not isinstance(start, str):
        raise RegistryError(f"model version {version} has no holdout start in its metrics")
    return pd.Timestamp(start)
