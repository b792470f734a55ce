"""A/B test statistics: cluster-robust estimates by hand, the SRM check, the decision rules,
and simulations of whole tests looked at after every batch of outcomes.

The simulations run many tests at once as (runs × looks) arrays through the library's own
vectorized path (`sums_from_table` → `accumulate` → `difference` → `sequential_path`); one
test checks that this path and `evaluate` called look by look agree. Measured rates are
written to the output (visible with `-s` or `-rA`) and recorded as test properties.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from aifx_ml.abtest.stats import (
    ALPHA,
    MAX_DECIDED,
    MIN_DECIDED,
    TAU,
    ClusterSums,
    Difference,
    SequentialPath,
    SequentialPlan,
    accumulate,
    always_valid_p,
    arm_mean,
    arm_summary,
    cluster_sums,
    difference,
    evaluate,
    msprt_log_lr,
    sequential_path,
    srm_check,
    sums_from_table,
)
from aifx_ml.errors import InvalidInputError

RUNS = 2000  # simulated tests per scenario (the requirement is >= 1,000)
BATCH = 50  # decided signals per arm between two looks
CLUSTER = 25  # signals per pair-day cluster: two clusters per arm per batch
LOOKS = MAX_DECIDED // BATCH  # looks until the maximum sample per arm
ICC_SHIFT_SD = 0.10  # sd of a cluster's shift of the win rate (ICC ≈ 0.04, design effect ≈ 2)

Report = Callable[[str, object], None]


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Report:
    """Show a measured figure in the test output and keep it as a test property."""

    def emit(name: str, value: object) -> None:
        record_property(name, value)
        sys.stdout.write(f"\n[abtest] {name} = {value}")

    return emit


# Tiny frames, worked by hand.


def frame(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["variant", "outcome", "pnl", "cluster"])


def outcomes(variant: str, cluster: str, wins: list[int], pnl: float = 0.0) -> list:
    return [(variant, "win" if w else "loss", pnl if w else -pnl, cluster) for w in wins]


# Arm A: clusters (1, 1, 0), (0, 0), (1): 3 wins of 6. Arm B: (1, 1), (1, 0, 0, 1): 4 of 6.
HAND = frame(
    outcomes("a", "EUR/USD|d1", [1, 1, 0])
    + outcomes("a", "EUR/USD|d2", [0, 0])
    + outcomes("a", "GBP/USD|d1", [1])
    + outcomes("b", "USD/JPY|d1", [1, 1])
    + outcomes("b", "USD/JPY|d2", [1, 0, 0, 1])
)


def test_win_rate_standard_error_is_cluster_robust() -> None:
    # p = 3/6; cluster residuals S_c − p N_c = 0.5, −1, 0.5; CR1 = 3/2 · 1.5 / 6² = 1/16.
    a = arm_summary(HAND)["a"]
    assert (a.decided, a.wins, a.losses, a.clusters) == (6, 3, 3, 3)
    assert a.win_rate == 0.5
    assert a.win_rate_se == pytest.approx(0.25)  # the binomial one would be sqrt(.25/6) = .204
    assert a.win_rate_ci == pytest.approx((0.5 - 1.959964 * 0.25, 0.5 + 1.959964 * 0.25))


def test_cluster_robust_error_never_drops_below_the_iid_one() -> None:
    # Every cluster is one win and one loss: the CR1 sum is 0, the iid variance (3 − 6/4)/30.
    balanced = frame([o for d in ("d1", "d2", "d3") for o in outcomes("a", d, [1, 0])])
    assert arm_summary(balanced)["a"].win_rate_se == pytest.approx(math.sqrt(0.05))


def test_difference_variance_by_hand() -> None:
    # u_c = (S_c − p̂ N_c)/N, signed by arm: A −1/12, 1/6, −1/12; B 1/9, −1/9. G = 5 clusters.
    is_b = (HAND["variant"] == "b").to_numpy()
    codes = pd.factorize(HAND["cluster"])[0]
    diff = difference(cluster_sums(is_b, HAND["outcome"] == "win", codes))
    u = [Fraction(-1, 12), Fraction(1, 6), Fraction(-1, 12), Fraction(1, 9), Fraction(-1, 9)]
    cr1 = Fraction(5, 4) * sum(x * x for x in u)
    iid = Fraction(3, 2) / 30 + Fraction(4, 3) / 30  # (Σy² − N p̂²)/(N(N−1)) per arm
    assert float(diff.theta_hat) == pytest.approx(4 / 6 - 3 / 6)
    assert float(diff.variance_cluster) == pytest.approx(float(cr1))
    assert float(diff.variance_iid) == pytest.approx(float(iid))
    assert float(diff.variance) == pytest.approx(max(float(cr1), float(iid)))


def test_a_shift_shared_by_both_arms_cancels_in_the_difference() -> None:
    # Routing by account: both arms trade the same pair-days, so a good day lifts both. The
    # per-arm CR1 variances add up to far more than the variance of the difference.
    rng = np.random.default_rng(3)
    n = rng.binomial(40, np.repeat(rng.uniform(0.2, 0.8, 60)[:, None], 2, axis=1))
    table = np.stack([np.full(60, 40), n[:, 0], np.full(60, 40), n[:, 1]], axis=-1)
    sums = sums_from_table(table, np.stack([n[:, 0], n[:, 1]], axis=-1))
    diff = difference(sums)
    separate = float(arm_mean(sums, 0)[1] + arm_mean(sums, 1)[1])
    assert float(diff.variance_cluster) < 0.5 * separate
    assert float(diff.variance_cluster) == pytest.approx(float(diff.variance_iid), rel=0.5)


def test_breakevens_and_pending_are_counted_but_not_decided() -> None:
    extra = [
        ("a", "breakeven", 0.1, "EUR/USD|d1"),
        ("a", "pending", float("nan"), "EUR/USD|d3"),
        ("b", "breakeven", -0.2, "USD/JPY|d1"),
        ("b", "breakeven", 0.0, "USD/JPY|d3"),
    ]
    before, after = arm_summary(HAND), arm_summary(frame([*HAND.itertuples(index=False), *extra]))
    assert (after["a"].signals, after["a"].decided, after["a"].breakevens) == (8, 6, 1)
    assert (after["a"].pending, after["b"].signals, after["b"].breakevens) == (1, 8, 2)
    for arm in "ab":
        assert after[arm].win_rate == before[arm].win_rate
        assert after[arm].win_rate_se == before[arm].win_rate_se
    # pnl counts every labeled signal, breakevens included; pending ones have none.
    assert after["a"].mean_pnl == pytest.approx(0.1 / 7)


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="cluster"):
        arm_summary(HAND.drop(columns="cluster"))
    with pytest.raises(InvalidInputError, match="variant"):
        arm_summary(frame([("c", "win", 1.0, "x")]))
    with pytest.raises(InvalidInputError, match="split"):
        srm_check(10, 10, 1.0)
    with pytest.raises(InvalidInputError):
        SequentialPlan(min_decided_per_arm=500, max_decided_per_arm=100)


# The sample-ratio mismatch check (the split is B's share of traffic).


def test_srm_flags_a_split_that_does_not_match_the_configuration() -> None:
    check = srm_check(600, 400, split_b=0.2)  # 40% reached B, 20% configured
    assert check.chi2 == pytest.approx(200**2 / 800 + 200**2 / 200)
    assert check.flagged
    assert srm_check(2000, 8000, split_b=0.2).flagged  # the arms swapped
    assert not srm_check(2000, 8000, split_b=0.8).flagged
    assert srm_check(2000, 8000, split_b=0.8).p_value == pytest.approx(1.0)
    assert srm_check(0, 0, split_b=0.5).p_value == 1.0


def test_srm_p_value_is_the_chi_square_tail() -> None:
    # 950/1050: chi2 = 5; 484/516: chi2 = 1.024. Tails from scipy.stats.chi2.sf(x, 1).
    assert srm_check(950, 1050, 0.5).p_value == pytest.approx(0.025347, abs=1e-6)
    assert srm_check(484, 516, 0.5).p_value == pytest.approx(0.311572, abs=1e-6)
    assert not srm_check(484, 516, 0.5).flagged
    assert srm_check(4800, 5200, 0.5).flagged  # chi2 = 16, p = 6.3e-5


def test_srm_counts_routing_keys_when_the_signals_say_which() -> None:
    # A key keeps its arm, so one busy account is one unit of assignment, not 300 signals.
    keys = [f"a{i}" for i in range(500)] + [f"b{i}" for i in range(500)] + ["b0"] * 299
    data = pd.DataFrame(
        {
            "variant": [k[0] for k in keys],
            "outcome": "pending",
            "pnl": float("nan"),
            "cluster": "EUR/USD|d1",
            "routing_key": keys,
        }
    )
    by_key = evaluate(data, split_b=0.5)
    assert (by_key.srm.observed_a, by_key.srm.observed_b) == (500, 500)
    assert by_key.status == "continue"
    by_signal = evaluate(data.drop(columns="routing_key"), split_b=0.5)
    assert (by_signal.srm.observed_a, by_signal.srm.observed_b) == (500, 799)
    assert by_signal.status == "srm"
    # A signal without a key was routed on its own: it counts as one unit.
    keyless = data.assign(routing_key=[None] * 500 + keys[500:])
    assert evaluate(keyless, split_b=0.5).srm.observed_a == 500


# The decision rules on one look.


def look(rate_a: float, rate_b: float, per_arm: int, loss_b: float = 1.0) -> pd.DataFrame:
    """per_arm decided signals an arm at exact win rates, in clusters of 20; a win earns 1%,
    a loss costs 1% (B's losses cost `loss_b` %)."""
    rows = []
    for arm, rate, loss in (("a", rate_a, 1.0), ("b", rate_b, loss_b)):
        wins = np.arange(per_arm) < round(rate * per_arm)
        np.random.default_rng(0).shuffle(wins)
        rows += [
            (arm, "win" if w else "loss", 1.0 if w else -loss, f"{arm}{i // 20}")
            for i, w in enumerate(wins)
        ]
    return frame(rows)


def test_a_clear_winner_is_declared_and_json_ready() -> None:
    decision = evaluate(look(0.45, 0.60, 1000), split_b=0.5)
    assert decision.status == "winner"
    assert decision.winner == "b"
    assert decision.p_value <= ALPHA
    assert decision.theta_hat == pytest.approx(0.15)
    assert (decision.decided_a, decision.decided_b) == (1000, 1000)
    assert json.loads(json.dumps(decision.as_dict(), allow_nan=False))["winner"] == "b"
    empty_b = arm_summary(look(0.5, 0.5, 10).query("variant == 'a'"))["b"]
    assert json.loads(json.dumps(empty_b.as_dict(), allow_nan=False))["win_rate"] is None
    assert evaluate(look(0.60, 0.45, 1000), split_b=0.5).winner == "a"


def test_the_minimum_sample_blocks_early_decisions() -> None:
    early = look(0.10, 0.90, MIN_DECIDED - 1)
    assert evaluate(early, split_b=0.5).status == "continue"
    assert evaluate(early, split_b=0.5).p_value == 1.0
    small = SequentialPlan(min_decided_per_arm=50)
    assert evaluate(early, split_b=0.5, plan=small).winner == "b"


def test_the_p_value_is_a_running_minimum_over_looks() -> None:
    flat = look(0.50, 0.51, 400)
    first = evaluate(flat, split_b=0.5)
    assert first.status == "continue"
    assert evaluate(flat, split_b=0.5, previous_p=0.2).p_value == min(0.2, first.p_value)
    assert evaluate(flat, split_b=0.5, previous_p=0.01).status == "winner"


def test_a_broken_split_never_produces_a_winner() -> None:
    decision = evaluate(look(0.45, 0.60, 1000), split_b=0.2)
    assert decision.status == "srm"
    assert decision.winner is None
    assert decision.srm.flagged
    assert "sample-ratio mismatch" in decision.reason


def test_the_guardrail_blocks_a_winner_with_clearly_worse_pnl() -> None:
    # B wins more often but its losses cost 2.5%: mean pnl −0.40% against A's −0.10%.
    worse = look(0.45, 0.60, 1000, loss_b=2.5)
    decision = evaluate(worse, split_b=0.5)
    assert decision.status == "guardrail"
    assert decision.winner is None
    assert decision.pnl_difference == pytest.approx(-0.30)
    assert "mean pnl" in decision.reason
    lenient = SequentialPlan(guardrail_pnl_margin=0.5)
    assert evaluate(worse, split_b=0.5, plan=lenient).winner == "b"
    # Slightly lower (−0.12% against −0.10%), well within the noise: not blocked.
    close = evaluate(look(0.45, 0.60, 1000, loss_b=1.8), split_b=0.5)
    assert (close.status, close.winner) == ("winner", "b")
    assert close.pnl_difference == pytest.approx(-0.02)


def test_no_decision_by_the_maximum_sample_or_duration_is_inconclusive() -> None:
    same = look(0.50, 0.50, 600)
    capped = SequentialPlan(max_decided_per_arm=600)
    assert evaluate(same, split_b=0.5).status == "continue"
    assert evaluate(same, split_b=0.5, plan=capped).status == "inconclusive"
    expired = evaluate(same, split_b=0.5, expired=True)
    assert (expired.status, expired.winner) == ("inconclusive", None)
    assert "maximum duration" in expired.reason


def test_msprt_statistic_matches_its_closed_form() -> None:
    theta, v, tau = 0.05, 1.6e-4, TAU
    expected = math.log(math.sqrt(v / (v + tau**2))) + tau**2 * theta**2 / (2 * v * (v + tau**2))
    assert float(msprt_log_lr(theta, v, tau)) == pytest.approx(expected)
    assert float(always_valid_p(msprt_log_lr(0.0, v, tau))) == 1.0


# Simulated tests, many at once: (runs × looks) cumulative cluster sums.


def simulate(
    rng: np.random.Generator,
    p_a: float,
    p_b: float,
    shift_sd: float = 0.0,
    runs: int = RUNS,
    cluster: int = CLUSTER,
) -> ClusterSums:
    """Cumulative sums after each look; each batch brings BATCH decided signals per arm in
    clusters of `cluster` that share a random shift of the win rate (sd `shift_sd`)."""
    shape = (runs, LOOKS, BATCH // cluster)

    def wins(p: float) -> np.ndarray:
        shift = rng.normal(0.0, shift_sd, shape) if shift_sd else np.zeros(shape)
        return rng.binomial(cluster, np.clip(p + shift, 0.0, 1.0)).astype(np.float64)

    s_a, s_b = wins(p_a), wins(p_b)
    n, zero = np.full_like(s_a, cluster), np.zeros_like(s_a)
    # Each cluster belongs to one arm (the harder case: nothing cancels in the difference).
    table = np.concatenate(
        [np.stack([n, s_a, zero, zero], -1), np.stack([zero, zero, n, s_b], -1)], axis=2
    )
    squares = np.concatenate([np.stack([s_a, zero], -1), np.stack([zero, s_b], -1)], axis=2)
    return accumulate(sums_from_table(table, squares))  # binary outcomes: Σy² = Σy


def run(
    sums: ClusterSums, variance: str = "library", plan: SequentialPlan | None = None
) -> SequentialPath:
    """The library's path; variance "naive" is what a binomial variance that assumes
    independent signals would conclude, "cr1" is CR1 without the library's iid floor."""
    diff = difference(sums)
    v = {"naive": diff.variance_iid, "cr1": np.fmax(diff.variance_cluster, 1e-12)}
    if variance in v:
        diff = Difference(diff.theta_hat, v[variance], diff.variance_cluster, diff.variance_iid)
    return sequential_path(diff, sums.first[..., 0], sums.first[..., 2], plan or SequentialPlan())


def declared(path: SequentialPath) -> float:
    return float((path.winner != 0).mean())


def test_aa_tests_rarely_declare_a_winner(report: Report) -> None:
    path = run(simulate(np.random.default_rng(20261125), 0.5, 0.5))
    rate = declared(path)
    report("aa_false_positive_rate", rate)
    report("aa_setup", f"{RUNS} runs, p = 0.5, a look every {BATCH} per arm up to {MAX_DECIDED}")
    assert rate <= ALPHA


def test_clustered_aa_needs_the_cluster_robust_variance(report: Report) -> None:
    sums = simulate(np.random.default_rng(20261126), 0.5, 0.5, shift_sd=ICC_SHIFT_SD)
    robust, naive = declared(run(sums)), declared(run(sums, "naive"))
    report("clustered_aa_false_positive_rate_cluster_robust", robust)
    report("clustered_aa_false_positive_rate_naive_binomial", naive)
    assert robust <= ALPHA
    assert naive > ALPHA
    assert naive > 2 * robust


def test_few_large_clusters_need_the_iid_floor(report: Report) -> None:
    # Clusters of 50 with a mild shift: 4 clusters per arm at the minimum sample. CR1 alone
    # is then noisy and often too small; the floor at the iid variance keeps the rate down.
    sums = simulate(np.random.default_rng(20261128), 0.5, 0.5, shift_sd=0.05, cluster=50)
    floored, cr1 = declared(run(sums)), declared(run(sums, "cr1"))
    report("few_large_clusters_aa_false_positive_rate", floored)
    report("few_large_clusters_aa_false_positive_rate_cr1_without_floor", cr1)
    assert floored <= ALPHA
    assert cr1 > floored


def test_a_five_point_lift_is_found_within_the_maximum_sample(report: Report) -> None:
    path = run(simulate(np.random.default_rng(20261127), 0.50, 0.55))
    power, wrong = float((path.winner == 1).mean()), float((path.winner == -1).mean())
    found = path.decided_at[path.winner == 1]
    median_n = int((np.median(found) + 1) * BATCH)
    report("power_b_wins", power)
    report("wrong_winner_rate", wrong)
    report("power_setup", f"p_A = 0.50, p_B = 0.55, max {MAX_DECIDED} decided per arm")
    report("median_decided_per_arm_at_decision", median_n)
    assert power >= 0.80
    assert wrong <= 0.005


def test_the_vectorized_path_and_evaluate_agree_look_by_look() -> None:
    rng = np.random.default_rng(7)
    looks = 12
    s_a = rng.binomial(1, 0.48, (looks, BATCH))
    s_b = rng.binomial(1, 0.60, (looks, BATCH))
    rows = [
        (arm, "win" if w else "loss", 1.0 if w else -1.0, f"{arm}|{k}|{i // CLUSTER}")
        for k in range(looks)
        for arm, s in (("a", s_a[k]), ("b", s_b[k]))
        for i, w in enumerate(s)
    ]
    data = frame(rows)
    n = np.full((looks, 2), float(CLUSTER))
    wins_a = s_a.reshape(looks, 2, CLUSTER).sum(-1)
    wins_b = s_b.reshape(looks, 2, CLUSTER).sum(-1)
    zero = np.zeros_like(n)
    table = np.concatenate(
        [np.stack([n, wins_a, zero, zero], -1), np.stack([zero, zero, n, wins_b], -1)], axis=1
    )
    squares = np.concatenate([np.stack([wins_a, zero], -1), np.stack([zero, wins_b], -1)], axis=1)
    path = run(accumulate(sums_from_table(table, squares)), plan=SequentialPlan(alpha=0.2))
    previous, first = 1.0, -1
    for k in range(looks):
        seen = data.iloc[: 2 * BATCH * (k + 1)]
        decision = evaluate(seen, 0.5, SequentialPlan(alpha=0.2), previous_p=previous)
        assert decision.p_value == pytest.approx(path.p_value[k])
        if decision.status == "winner" and first < 0:
            first = k
        previous = decision.p_value
    assert first == int(path.decided_at) >= 0
