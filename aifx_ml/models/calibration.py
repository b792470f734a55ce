"""Calibrated probabilities and a version's own buy / sell thresholds, fit on held-out data.

A full training fits both on every sample it did not learn from: its validation split and the
gate's holdout (`aifx_ml.training.runs`); "validation" below means those samples.

**Calibration: Platt scaling without its intercept (temperature scaling)**, P = σ(a · logit(p)),
one number fit by maximum likelihood with Platt's smoothed targets. Chosen over isotonic
regression because (1) the validation split of a weekly training holds a hundred or a few
hundred samples, where isotonic regression's step function overfits and its flat steps tie
many requests at one probability, so a threshold moved by a hair changes a whole step of
signals; (2) a network's sigmoid output is mostly over- or under-confident, a scale in logit
space, which is what a fits; (3) it is increasing, so it keeps the model's ranking (its AUC).
Chosen over full Platt scaling (with an intercept b) because b fits the validation period's
share of up moves, which in a drifting market does not carry over: on the demo's market, full
Platt's b ranged from −0.54 to +0.67 on 117 validation samples, moving 0.5 and turning calls
around that the gate had judged the other way. Without b, P(up) ≥ 0.5 exactly when the
network's own output is, so the gate and the refresh rule (which judge that direction on the
holdout) judge the direction served; only the confidence moves, and so where the thresholds
cut. A fit whose slope comes out at or below 0 (the model ranks no better than chance on
validation, or backwards) is replaced by a slope of 0.001: every answer a hair from 0.5 on the
network's own side, no edge, no signal.

**Thresholds: where validation shows the surest edge over the best baseline.** On validation,
for buys: of the t in 0.50, 0.51, … 0.80 at which at least `min_signals` calibrated
probabilities are ≥ t, the one where the *lower end of the 95% Wilson interval* of the share
that went up is highest — if it is at least the best baseline's buy precision plus `margin`
(0 by default), the best of always buying (the up rate) and each naive baseline's own buy
calls. Sells mirror it (P ≤ 1 − t, the share that went down). No such t: that direction is
never signalled; a model with no edge then says hold *because* it has no edge. The surest
rather than the least extreme threshold: the least extreme one signals on every request as soon
as the average shows an edge, marginal calls included.

The bound, not the point estimate, because a validation split holds one or a few hundred
samples and the rule looks at up to 31 thresholds each way. Simulated
(`benchmarks/bench_thresholds.py`), a model with no edge at all finds a threshold somewhere in
2–6% of trainings with 120 to 1,000 validation samples (31–38% when the point estimate had to
beat the baseline by 2 points); a model right 56% of the time finds one in 24% of trainings on
120 samples, 80% on 400, all but always on 1,000. The interval is the 95% one (z = 1.96) rather
than a one-sided 95% bound (z = 1.645) because the many looks add up: with 1.645 a model with
no edge found a threshold in up to 11% of trainings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aifx_ml.domain import Cutoffs
from aifx_ml.errors import InvalidInputError
from aifx_ml.intervals import Z95, wilson_interval

F64 = npt.NDArray[np.float64]
EPS = 1e-6
MIN_SLOPE = 1e-3  # a temperature-scaled slope is at least this: the direction is kept
GRID = tuple(round(0.50 + i / 100, 2) for i in range(31))  # 0.50 … 0.80
DEFAULT_MARGIN = 0.0  # precision points the lower bound must clear over the best baseline
DEFAULT_MIN_SIGNALS = 30  # validation signals a threshold must give to be judged


@dataclass(frozen=True)
class Platt:
    """P = σ(a · logit(p) + b); the identity is a = 1, b = 0."""

    a: float = 1.0
    b: float = 0.0

    def __call__(self, p: npt.ArrayLike) -> F64:
        z = _logit(np.asarray(p, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-(self.a * z + self.b)))

    def as_dict(self) -> dict[str, Any]:
        return {"method": "platt", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Platt:
        if data.get("method") != "platt":
            raise InvalidInputError(f"unknown calibration {data.get('method')!r}")
        return cls(float(data["a"]), float(data["b"]))


def fit_platt(
    p: npt.ArrayLike, y: npt.ArrayLike, *, intercept: bool = False, iterations: int = 100
) -> Platt:
    """Platt scaling of probabilities `p` to outcomes `y` (1 up, 0 down): Newton's method on
    the log-loss with Platt's targets (N₊ + 1) / (N₊ + 2) and 1 / (N₋ + 2), which keep a
    separable or tiny sample from pushing the fit to infinity. Without `intercept` (the
    default) b stays 0: temperature scaling, which keeps 0.5 where it is (see the module)."""
    z = _logit(np.asarray(p, dtype=np.float64))
    outcome = np.asarray(y, dtype=np.float64)
    if z.shape != outcome.shape or z.ndim != 1:
        raise InvalidInputError("calibration needs one probability per outcome")
    if len(z) < 2:
        raise InvalidInputError("calibration needs at least 2 validation samples")
    ups = float(outcome.sum())
    t = np.where(outcome > 0.5, (ups + 1) / (ups + 2), 1 / (len(outcome) - ups + 2))
    x = np.column_stack([z, np.ones_like(z)]) if intercept else z[:, None]
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        q = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (q - t)
        hessian = x.T @ (x * (q * (1 - q))[:, None]) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    if w[0] <= MIN_SLOPE:
        # On validation the model ranks no better than chance, or backwards: it has no edge
        # to calibrate, and is not turned around. With an intercept every answer becomes the
        # (smoothed) base rate; without one, a hair from 0.5 on the network's own side, so
        # the direction stays the one the gate judged while the confidence is all but gone.
        if intercept:
            return Platt(0.0, float(np.log(t.mean() / (1 - t.mean()))))
        return Platt(MIN_SLOPE, 0.0)
    return Platt(float(w[0]), float(w[1]) if intercept else 0.0)


def calibrated(calibration: Platt | None, raw: npt.ArrayLike) -> F64:
    """A version's P(up) from its network's output: calibrated, or as it is (no calibration)."""
    p = np.asarray(raw, dtype=np.float64)
    return p if calibration is None else calibration(p)


@dataclass(frozen=True)
class Thresholds:
    """A version's own thresholds on calibrated P(up): buy at or above `buy`, sell at or below
    `sell`; None: that direction is never signalled (no threshold beat the baselines)."""

    buy: float | None
    sell: float | None
    buy_precision: float | None  # on validation, at the chosen threshold
    sell_precision: float | None
    buy_reference: float  # the best baseline's buy precision on validation
    sell_reference: float
    margin: float
    min_signals: int
    samples: int
    # The lower end of the 95% Wilson interval of the precision at the chosen threshold (what
    # the rule judges); None on cards written before the rule used it.
    buy_lower: float | None = None
    sell_lower: float | None = None

    @property
    def cutoffs(self) -> Cutoffs:
        """Where serving turns this version's calibrated P(up) into buy and sell."""
        return Cutoffs(self.buy, self.sell)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_metrics(self) -> dict[str, float | None]:
        """The thresholds as a training run's metrics (None: that direction never called)."""
        return {"buy_threshold": self.buy, "sell_threshold": self.sell}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        return cls(**data)


def choose_thresholds(
    p_calibrated: npt.ArrayLike,
    y: npt.ArrayLike,
    baseline_p: Mapping[str, npt.ArrayLike],
    *,
    margin: float = DEFAULT_MARGIN,
    min_signals: int = DEFAULT_MIN_SIGNALS,
    z: float = Z95,
) -> Thresholds:
    """The thresholds of the module docstring's rule, on validation: `p_calibrated` the
    model's calibrated P(up), `y` the outcomes, `baseline_p` each naive baseline's P(up) on
    the same samples (its buys are P ≥ 0.5, its sells P < 0.5). `z` sets the bound (0: the
    point estimate itself, the rule before the bound, kept for comparison)."""
    p = np.asarray(p_calibrated, dtype=np.float64)
    up = np.asarray(y, dtype=np.float64)
    if p.shape != up.shape or p.ndim != 1:
        raise InvalidInputError("thresholds need one probability per outcome")
    if not 0 <= margin < 1 or min_signals < 1 or not z >= 0:
        raise InvalidInputError(f"invalid margin {margin}, min_signals {min_signals} or z {z}")
    down = 1.0 - up
    calls = [np.asarray(b, dtype=np.float64) for b in baseline_p.values()]
    buy_ref = _reference(up, [b >= 0.5 for b in calls], min_signals)
    sell_ref = _reference(down, [b < 0.5 for b in calls], min_signals)
    buy, buy_precision, buy_lower = _surest(
        [p >= t for t in GRID], up, buy_ref + margin, min_signals, z
    )
    sell, sell_precision, sell_lower = _surest(
        [p <= round(1 - t, 2) for t in GRID], down, sell_ref + margin, min_signals, z
    )
    return Thresholds(
        buy=buy,
        sell=None if sell is None else round(1 - sell, 2),
        buy_precision=buy_precision,
        sell_precision=sell_precision,
        buy_lower=buy_lower,
        sell_lower=sell_lower,
        buy_reference=buy_ref,
        sell_reference=sell_ref,
        margin=margin,
        min_signals=min_signals,
        samples=int(len(p)),
    )


def _reference(hit: F64, calls: list[npt.NDArray[np.bool_]], min_signals: int) -> float:
    """The best baseline's precision in one direction: always calling it (the base rate), or
    a baseline's own calls when it makes at least `min_signals` of them."""
    best = float(hit.mean()) if len(hit) else 0.0
    for called in calls:
        if int(called.sum()) >= min_signals:
            best = max(best, float(hit[called].mean()))
    return best


def _surest(
    masks: list[npt.NDArray[np.bool_]], hit: F64, needed: float, min_signals: int, z: float
) -> tuple[float | None, float | None, float | None]:
    """(threshold, precision, its lower bound) of the mask whose bound is highest, if it
    reaches `needed` (a tie: the less extreme); None three times when none does."""
    n = np.array([int(called.sum()) for called in masks])
    wins = np.array([float(hit[called].sum()) for called in masks])
    # Masks are nested, ever more extreme: those with enough signals to judge come first.
    judged = int(np.argmin(n >= min_signals)) if (n < min_signals).any() else len(n)
    lower = wilson_interval(wins[:judged], n[:judged], z)[0]
    passing = lower >= needed - 1e-12
    if not passing.any():
        return None, None, None
    i = int(np.argmax(np.where(passing, lower, -np.inf)))
    return GRID[i], float(wins[i] / n[i]), float(lower[i])


def wilson_lower(successes: float, n: int, z: float = Z95) -> float:
    """The lower end of a proportion's Wilson score interval (95% by default); 0 for n = 0."""
    return float(wilson_interval(successes, n, z)[0]) if n > 0 else 0.0


def _logit(p: F64) -> F64:
    q = np.clip(p, EPS, 1 - EPS)
    out: F64 = np.log(q / (1 - q))
    return out


def log_loss(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Mean binary cross-entropy (for judging a calibration)."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    t = np.asarray(y, dtype=np.float64)
    return float(-np.mean(t * np.log(q) + (1 - t) * np.log(1 - q))) if len(t) else math.nan
