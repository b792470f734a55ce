"""Refresh promotions: in a drifting market a fresher model is the better bet unless the data
say otherwise.

A new full-training version may replace a Production version older than the refresh age
without winning a test, when the evidence does **not** show it worse by more than a margin δ:
on samples neither model trained on (the gate's holdout), the upper confidence bound of
accuracy(new) − accuracy(Production) is at least −δ, and the same holds against the best
baseline. Both are scored on the same samples, so the difference is paired: per sample
d_i = correct_new − correct_other, its mean and a variance clustered by series|day (samples
of one pair on one day share a market), floored at the independent-samples one.

This is a rule of *no evidence of harm*, not a test of superiority: it refreshes a truly
equal version almost always and, on a small holdout, a truly worse one quite often too.
Both rates are measured by simulation (`refresh_rates`, benchmarks/bench_refresh.py) and
stated in the README; a challenger still has to *win* a test to be called better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from aifx_ml.errors import InvalidInputError

DEFAULT_REFRESH_AGE = timedelta(days=7)  # half the 14-day staleness limit of serving
DEFAULT_MARGIN = 0.01  # δ: one accuracy point
DEFAULT_LEVEL = 0.95  # one-sided level of the upper confidence bound
MIN_SAMPLES = 30  # as the gate's: fewer holdout samples say nothing either way

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RefreshPolicy:
    """When a fresh full training may replace Production without winning a test."""

    age: timedelta | None = DEFAULT_REFRESH_AGE  # None: never refresh
    margin: float = DEFAULT_MARGIN
    level: float = DEFAULT_LEVEL

    @classmethod
    def after_days(cls, days: float) -> RefreshPolicy:
        """The policy of a `refresh_days` parameter (flows, `aifx replay`): 0 never refreshes."""
        if not days >= 0:
            raise InvalidInputError(f"invalid refresh age {days} days: expected 0 (off) or more")
        return cls(age=timedelta(days=days) if days > 0 else None)


@dataclass(frozen=True)
class GapBound:
    """accuracy(new) − accuracy(other) on common samples, with its one-sided upper bound."""

    versus: str
    difference: float
    se: float
    upper: float
    samples: int
    clusters: int
    passed: bool  # upper >= −margin: the data do not show the new version worse by > margin

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RefreshDecision:
    """Whether a fresher version may replace Production, and every number it rests on."""

    passed: bool
    reasons: tuple[str, ...]
    margin: float
    level: float
    production: GapBound
    baseline: GapBound

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: stored with the stage change (reason `refresh`)."""
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "margin": self.margin,
            "level": self.level,
            "versus_production": self.production.as_dict(),
            "versus_best_baseline": self.baseline.as_dict(),
        }


def z_of(level: float) -> float:
    """The one-sided normal quantile of `level` (0.95 → 1.645)."""
    if not 0.5 <= level < 1:
        raise InvalidInputError(f"invalid confidence level {level}: expected [0.5, 1)")
    return NormalDist().inv_cdf(level)


def paired_gap(
    new: npt.ArrayLike, other: npt.ArrayLike, clusters: npt.ArrayLike
) -> tuple[F64, F64, F64, F64]:
    """Mean of d = new − other over the last axis (samples), its clustered variance floored at
    the independent one, the sample count and the cluster count, for any leading shape.

    `clusters` (samples,) holds integer cluster codes shared by all leading rows.
    """
    d = np.asarray(new, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    codes = np.asarray(clusters, dtype=np.int64)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    u = d - mean[..., None]
    g = int(codes.max()) + 1 if codes.size else 0
    totals = u @ (codes[:, None] == np.arange(g)[None, :]).astype(np.float64)  # per cluster
    present = np.bincount(codes, minlength=g) > 0
    k = float(present.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        cluster = np.where(k > 1, k / (k - 1) * (totals**2).sum(axis=-1) / n**2, np.nan)
        iid = np.where(n > 1, (u**2).sum(axis=-1) / (n * (n - 1)), np.nan)
    variance = np.fmax(np.fmax(cluster, iid), 1e-12)
    return mean, variance, np.full(mean.shape, float(n)), np.full(mean.shape, k)


def gap_bound(
    versus: str,
    new: npt.ArrayLike,
    other: npt.ArrayLike,
    clusters: npt.ArrayLike,
    *,
    margin: float = DEFAULT_MARGIN,
    level: float = DEFAULT_LEVEL,
) -> GapBound:
    """One comparison: does the new version's accuracy trail `versus` by more than `margin`?"""
    mean, variance, n, k = paired_gap(new, other, clusters)
    se = math.sqrt(float(variance))
    upper = float(mean) + z_of(level) * se
    return GapBound(versus, float(mean), se, upper, int(n), int(k), passed=upper >= -margin - 1e-12)


def refresh_decision(
    candidate: npt.ArrayLike,
    production: npt.ArrayLike,
    baselines: Mapping[str, npt.ArrayLike],
    clusters: npt.ArrayLike,
    *,
    margin: float = DEFAULT_MARGIN,
    level: float = DEFAULT_LEVEL,
    min_samples: int = MIN_SAMPLES,
) -> RefreshDecision:
    """May the candidate replace Production as a refresh? Arrays are per holdout sample:
    1 where that model's call was right, 0 where wrong (the same samples for all)."""
    if not 0 <= margin < 1:
        raise InvalidInputError(f"invalid refresh margin {margin}: expected [0, 1)")
    if not baselines:
        raise InvalidInputError("a refresh is judged against the baselines too: none given")
    right = {name: np.asarray(v, dtype=np.float64) for name, v in baselines.items()}
    best = max(right, key=lambda name: (float(right[name].mean()), name))
    versus_production = gap_bound(
        "production", candidate, production, clusters, margin=margin, level=level
    )
    versus_baseline = gap_bound(
        f"baseline: {best}", candidate, right[best], clusters, margin=margin, level=level
    )
    reasons = []
    if versus_production.samples < min_samples:
        reasons.append(f"only {versus_production.samples} holdout samples (need {min_samples})")
    for bound in (versus_production, versus_baseline):
        if not bound.passed:
            reasons.append(
                f"accuracy trails {bound.versus} by {-bound.difference:.4f} "
                f"(upper {level:.0%} bound {bound.upper:+.4f} < -{margin:.4f})"
            )
    return RefreshDecision(
        not reasons, tuple(reasons), margin, level, versus_production, versus_baseline
    )


def refresh_rates(
    rng: np.random.Generator,
    runs: int,
    *,
    gap: float,
    samples_per_day: int,
    days: int,
    agreement: float,
    p_other: float = 0.5,
    day_sd: float = 0.10,
    margin: float = DEFAULT_MARGIN,
    level: float = DEFAULT_LEVEL,
) -> float:
    """Share of simulated holdouts on which a version whose true accuracy differs from the
    other's by `gap` passes the bound (`gap_bound`). Both models call every sample; they agree
    on `agreement` of them (and are then both right or both wrong) and are opposed otherwise;
    each day shifts every call's chance to be right by N(0, day_sd²)."""
    disagree = 1.0 - agreement
    p_dis = (1.0 - gap / disagree) / 2.0  # the other's chance to be right where they differ
    p_agree = (p_other - disagree * p_dis) / agreement
    if not (0 <= p_dis <= 1 and 0 <= p_agree <= 1):
        raise InvalidInputError(f"a gap of {gap} is not possible at {agreement:.0%} agreement")
    shape = (runs, days, samples_per_day)
    shift = rng.normal(0.0, day_sd, (runs, days, 1))
    agree = rng.random(shape) < agreement
    other = rng.random(shape) < np.clip(np.where(agree, p_agree, p_dis) + shift, 0, 1)
    new = np.where(agree, other, ~other)
    clusters = np.repeat(np.arange(days), samples_per_day)
    mean, variance, _, _ = paired_gap(new.reshape(runs, -1), other.reshape(runs, -1), clusters)
    upper = mean + z_of(level) * np.sqrt(variance)
    return float((upper >= -margin - 1e-12).mean())
