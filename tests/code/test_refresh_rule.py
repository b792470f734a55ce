"""The refresh rule's numbers: the paired gap by hand, the decision, and its error rates by
simulation (fewer runs than benchmarks/bench_refresh.py, same code)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.refresh import (
    gap_bound,
    paired_gap,
    refresh_decision,
    refresh_rates,
    z_of,
)


def test_paired_gap_by_hand() -> None:
    # Six samples in two clusters; d = new − other = (0, 1, 0 | 0, -1, 1): mean 1/6.
    new = [1, 1, 0, 1, 0, 1]
    other = [1, 0, 0, 1, 1, 0]
    clusters = [0, 0, 0, 1, 1, 1]
    mean, variance, n, k = paired_gap(new, other, clusters)
    assert float(mean) == pytest.approx(1 / 6)
    u = np.array([0, 1, 0, 0, -1, 1]) - 1 / 6
    iid = (u**2).sum() / (6 * 5)
    cluster = 2 / 1 * (u[:3].sum() ** 2 + u[3:].sum() ** 2) / 36
    assert float(variance) == pytest.approx(max(iid, cluster))
    assert (float(n), float(k)) == (6.0, 2.0)


def test_the_bound_is_one_sided_at_the_level() -> None:
    assert z_of(0.95) == pytest.approx(1.6448536269514722)
    assert z_of(0.8) == pytest.approx(0.8416212335729143)
    with pytest.raises(InvalidInputError, match="confidence level"):
        z_of(1.0)
    new, other = [1, 0] * 50, [1, 1] * 50  # new is right half as often
    bound = gap_bound("production", new, other, np.arange(100) // 10, margin=0.01)
    assert bound.difference == pytest.approx(-0.5)
    assert bound.upper == pytest.approx(-0.5 + z_of(0.95) * bound.se)
    assert not bound.passed


def test_an_equal_version_passes_and_a_clearly_worse_one_does_not() -> None:
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(14), 48)
    production = rng.random(clusters.size) < 0.55
    same = production.copy()
    baseline = rng.random(clusters.size) < 0.5
    decision = refresh_decision(same, production, {"persistence": baseline}, clusters)
    assert decision.passed and decision.reasons == ()
    assert decision.production.difference == 0.0
    assert decision.baseline.versus == "baseline: persistence"
    worse = production & (rng.random(clusters.size) < 0.7)  # loses 30 % of its right calls
    refused = refresh_decision(worse, production, {"persistence": baseline}, clusters)
    assert not refused.passed
    assert any("trails production" in r for r in refused.reasons)
    assert refused.as_dict()["versus_production"]["passed"] is False


def test_the_best_baseline_is_the_one_compared() -> None:
    clusters = np.repeat(np.arange(10), 10)
    model = np.ones(100)
    decision = refresh_decision(
        model, model, {"weak": np.zeros(100), "strong": np.ones(100)}, clusters
    )
    assert decision.baseline.versus == "baseline: strong"


def test_too_small_a_holdout_is_refused() -> None:
    decision = refresh_decision(np.ones(10), np.ones(10), {"b": np.zeros(10)}, np.arange(10))
    assert not decision.passed
    assert decision.reasons == ("only 10 holdout samples (need 30)",)


def test_error_rates_by_simulation() -> None:
    # Two pairs for two weeks at 80 % agreement (the benchmark runs 4,000 per cell and more
    # settings): an equal version passes almost always, a 2δ-worse one passes less often.
    rng = np.random.default_rng(20261207)
    kw = {"samples_per_day": 48, "days": 14, "agreement": 0.8}
    equal = refresh_rates(rng, 1000, gap=0.0, **kw)  # type: ignore[arg-type]
    worse = refresh_rates(rng, 1000, gap=-0.02, **kw)  # type: ignore[arg-type]
    much_worse = refresh_rates(rng, 1000, gap=-0.10, **kw)  # type: ignore[arg-type]
    assert equal >= 0.95
    assert much_worse < 0.2
    assert worse < equal
    assert math.isfinite(worse)


def test_an_impossible_gap_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="not possible"):
        refresh_rates(
            np.random.default_rng(0), 10, gap=-0.2, samples_per_day=2, days=2, agreement=0.95
        )
