"""Platt calibration of a version's P(up) and its own thresholds, chosen on validation."""

from __future__ import annotations

import numpy as np
import pytest

from aifx_ml.errors import InvalidInputError
from aifx_ml.models.calibration import (
    GRID,
    Platt,
    Thresholds,
    choose_thresholds,
    fit_platt,
    log_loss,
    wilson_lower,
)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def test_an_overconfident_toy_model_gets_calibrated() -> None:
    """True chances in 0.3–0.7; the model says σ(3·logit(q)): too sure. Temperature scaling
    finds a ≈ 1/3, the calibrated probabilities match the rates, and 0.5 stays where it was:
    every call keeps its direction."""
    rng = np.random.default_rng(5)
    q = rng.uniform(0.3, 0.7, 20_000)
    y = (rng.random(q.size) < q).astype(float)
    p = 1 / (1 + np.exp(-3 * _logit(q)))
    platt = fit_platt(p, y)
    assert platt.a == pytest.approx(1 / 3, abs=0.03) and platt.b == 0.0
    calibrated = platt(p)
    assert log_loss(calibrated, y) < log_loss(p, y) - 0.02
    bins = np.digitize(calibrated, [0.4, 0.5, 0.6])
    for b in range(4):
        inside = bins == b
        assert abs(calibrated[inside].mean() - y[inside].mean()) < 0.02, b
    assert np.array_equal(calibrated >= 0.5, p >= 0.5)
    # Strictly increasing: the ranking (and so the AUC) is kept.
    order = np.argsort(p)
    assert np.all(np.diff(calibrated[order]) >= 0)


def test_with_an_intercept_platt_also_fits_a_shift() -> None:
    """Full Platt scaling (kept for comparison): σ(3·logit(q) + 0.4) gives a ≈ 1/3 and
    b ≈ −0.4/3 — and moves 0.5, turning some calls around, which is why it is not the
    default."""
    rng = np.random.default_rng(5)
    q = rng.uniform(0.3, 0.7, 20_000)
    y = (rng.random(q.size) < q).astype(float)
    p = 1 / (1 + np.exp(-(3 * _logit(q) + 0.4)))
    platt = fit_platt(p, y, intercept=True)
    assert platt.a == pytest.approx(1 / 3, abs=0.03)
    assert platt.b == pytest.approx(-0.4 / 3, abs=0.03)
    assert not np.array_equal(platt(p) >= 0.5, p >= 0.5)


def test_a_calibrated_model_is_left_about_as_it_is_and_the_fit_is_stable() -> None:
    rng = np.random.default_rng(6)
    q = rng.uniform(0.2, 0.8, 20_000)
    y = (rng.random(q.size) < q).astype(float)
    platt = fit_platt(q, y)
    assert (platt.a, platt.b) == pytest.approx((1.0, 0.0), abs=0.05)
    assert fit_platt(q, y, intercept=True).b == pytest.approx(0.0, abs=0.05)
    # Separable data: Platt's smoothed targets keep the fit finite.
    separable = fit_platt([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert np.isfinite([separable.a, separable.b]).all()
    assert Platt.from_dict(platt.as_dict()) == platt
    with pytest.raises(InvalidInputError, match="one probability per outcome"):
        fit_platt([0.5, 0.6], [1.0])


def _lower(k: float, n: int) -> float:
    """The lower end of the 95% Wilson interval, written out."""
    z = 1.959963984540054
    p = k / n
    return (p + z**2 / (2 * n) - z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))) / (1 + z**2 / n)


def _by_hand(p: np.ndarray, y: np.ndarray, ref_up: float, ref_down: float) -> tuple:
    """The rule, written out: of the grid thresholds with ≥ 30 signals, the one whose
    precision's 95% Wilson interval starts highest, if it starts at or above the reference."""

    def surest(called_at: list[np.ndarray], hit: np.ndarray, ref: float) -> int | None:
        bounds = [_lower(hit[c].sum(), c.sum()) if c.sum() >= 30 else -1.0 for c in called_at]
        i = int(np.argmax(bounds))  # the first of equal maxima: the less extreme
        return i if bounds[i] >= ref else None

    buy = surest([p >= t for t in GRID], y, ref_up)
    sell = surest([p <= round(1 - t, 2) for t in GRID], 1 - y, ref_down)
    return (
        None if buy is None else GRID[buy],
        None if sell is None else round(1 - GRID[sell], 2),
    )


def test_the_lower_bound_by_hand() -> None:
    """Wilson's bound on small cases: 27 of 30 right gives 0.7438; 15 of 30, 0.3315; a
    perfect 30 of 30 still only 0.8865 (the bound never claims certainty)."""
    assert wilson_lower(27, 30) == pytest.approx(0.74379, abs=1e-4)
    assert wilson_lower(15, 30) == pytest.approx(0.33154, abs=1e-4)
    assert wilson_lower(30, 30) == pytest.approx(0.88649, abs=1e-4)
    assert wilson_lower(0, 0) == 0.0
    for k, n in ((27, 30), (15, 30), (30, 30), (1, 40)):
        assert wilson_lower(k, n) == pytest.approx(_lower(k, n))


def test_thresholds_obey_the_rule() -> None:
    """A model right past 0.6 / 0.4 and wrong between them and 0.5: the chosen thresholds are
    those whose precision's lower bound is highest, and clears the best baseline, as the rule
    by hand says."""
    rng = np.random.default_rng(7)
    n = 2_000
    p = rng.uniform(0.3, 0.7, n)
    chance = np.select([p > 0.6, p >= 0.5, p >= 0.4], [0.8, 0.2, 0.8], 0.2)
    y = (rng.random(n) < chance).astype(float)
    last_up = rng.random(n) < 0.5
    baselines = {"majority": np.full(n, 0.55), "persistence": np.where(last_up, 0.6, 0.4)}
    chosen = choose_thresholds(p, y, baselines)
    ref_up = max(y.mean(), y[last_up].mean())  # always buy; persistence's buys (after an up)
    ref_down = max(1 - y.mean(), (1 - y[~last_up]).mean())  # majority never sells
    assert (chosen.buy_reference, chosen.sell_reference) == pytest.approx((ref_up, ref_down))
    assert (chosen.buy, chosen.sell) == _by_hand(p, y, ref_up, ref_down)
    # Past 0.6 the model is right 80% of the time: the surest buys and sells lie out there.
    assert chosen.buy is not None and 0.6 <= chosen.buy <= 0.7
    assert chosen.sell is not None and 0.3 <= chosen.sell <= 0.4
    assert chosen.buy_precision == pytest.approx(y[p >= chosen.buy].mean())
    bound = _lower(y[p >= chosen.buy].sum(), (p >= chosen.buy).sum())
    assert chosen.buy_lower == pytest.approx(bound) and bound >= ref_up
    for t in GRID:  # no other threshold's bound is higher
        if (p >= t).sum() >= 30:
            assert _lower(y[p >= t].sum(), (p >= t).sum()) <= bound + 1e-12
    assert Thresholds.from_dict(chosen.as_dict()) == chosen


def test_a_model_that_ranks_backwards_is_not_turned_around() -> None:
    """Wrong on validation more often than right: Platt's slope would come out negative and
    reverse the model; it is calibrated to a hair from 0.5 on its own side instead (the base
    rate, with an intercept), and gets no threshold."""
    rng = np.random.default_rng(9)
    q = rng.uniform(0.3, 0.7, 2_000)
    y = (rng.random(q.size) < q).astype(float)
    backwards = 1 - q
    platt = fit_platt(backwards, y)
    assert (platt.a, platt.b) == (0.001, 0.0)
    assert platt(backwards) == pytest.approx(np.full(q.size, 0.5), abs=1e-3)
    assert np.array_equal(platt(backwards) >= 0.5, backwards >= 0.5)  # not turned around
    with_intercept = fit_platt(backwards, y, intercept=True)
    assert with_intercept.a == 0.0
    assert with_intercept(backwards) == pytest.approx(
        np.full(q.size, (y.sum() + 1) / (y.size + 2)), abs=0.01
    )
    chosen = choose_thresholds(platt(backwards), y, {"majority": np.full(q.size, 0.5)})
    assert (chosen.buy, chosen.sell) == (None, None)


def test_a_model_with_no_edge_gets_no_threshold_and_says_hold() -> None:
    rng = np.random.default_rng(8)
    n = 2_000
    y = (rng.random(n) < 0.5).astype(float)
    flat = choose_thresholds(np.full(n, 0.5), y, {"majority": np.full(n, 0.5)})
    assert (flat.buy, flat.sell) == (None, None)
    noise = rng.uniform(0.4, 0.6, n)  # unrelated to the outcomes
    chosen = choose_thresholds(noise, y, {"majority": np.full(n, 0.5)})
    assert (chosen.buy, chosen.sell) == _by_hand(noise, y, chosen.buy_reference,
                                                 chosen.sell_reference)  # fmt: skip
    few = choose_thresholds(np.full(20, 0.9), np.ones(20), {})  # 20 < 30 signals: not judged
    assert (few.buy, few.sell) == (None, None)


def _trial(rng: np.random.Generator, n: int, slope: float) -> tuple[np.ndarray, ...]:
    """A validation split of `n`: a network's narrow output, outcomes whose true chance leans
    `slope` on the same score (0: no edge), a persistence baseline with no edge; calibrated."""
    score = rng.normal(size=n)
    raw = 1 / (1 + np.exp(-0.3 * score))
    y = (rng.random(n) < 1 / (1 + np.exp(-slope * score))).astype(float)
    persistence = np.where(rng.random(n) < 0.5, 0.6, 0.4)
    return fit_platt(raw, y)(raw), y, persistence


def test_a_model_with_no_edge_rarely_finds_a_threshold_and_one_with_an_edge_often_does() -> None:
    """Simulated validation splits of 400 (`benchmarks/bench_thresholds.py` runs more): with no
    edge, a threshold is found somewhere on the grid, in either direction, in about 4% of
    trainings, where the point estimate plus 2 points found one in about 35%; a model 56%
    right finds one in about 80%."""
    rng = np.random.default_rng(11)
    runs = 300

    def found(slope: float, **rule: float) -> float:
        hits = 0
        for _ in range(runs):
            p, y, persistence = _trial(rng, 400, slope)
            chosen = choose_thresholds(p, y, {"persistence": persistence}, **rule)
            hits += chosen.buy is not None or chosen.sell is not None
        return hits / runs

    assert found(0.0) <= 0.08  # a binomial 4% of 300 stays under 8% (4 standard errors)
    assert found(0.0, margin=0.02, z=0.0) >= 0.25
    assert found(0.3) >= 0.7
