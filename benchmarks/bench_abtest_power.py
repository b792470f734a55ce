"""Benchmark: false-positive rate and power of the sequential A/B test, by simulation.

Prints one JSON object to stdout; exits 1 if a check fails (A/A false positives <= alpha,
power >= 0.80 at the default maximum sample). Every simulated test is looked at after each
batch of decided signals, through the library's vectorized path (`aifx_ml.abtest.stats`).

    .venv/bin/python benchmarks/bench_abtest_power.py [--runs N] [--seed S] [--chunk C]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np

from aifx_ml.abtest.stats import (
    MAX_DECIDED,
    ClusterSums,
    Difference,
    SequentialPath,
    SequentialPlan,
    accumulate,
    difference,
    sequential_path,
    srm_check,
    sums_from_table,
)

BATCH = 50  # decided signals per arm between two looks
CLUSTER = 25  # signals per pair-day cluster
HORIZON = 4000  # decided signals per arm simulated (the plans below stop at or before it)
ICC_SHIFT_SD = 0.10  # sd of a cluster's shift of the win rate: ICC ≈ 0.04, design effect ≈ 2
MAX_SAMPLES = (2000, 2500, 3000, 3500, 4000)
TAUS = (0.025, 0.04, 0.05, 0.075, 0.1)


def simulate(
    rng: np.random.Generator,
    runs: int,
    p_a: float,
    p_b: float,
    shift_sd: float,
    shared: bool,
    cluster: int = CLUSTER,
) -> ClusterSums:
    """Cumulative sums after each look of `runs` tests; each look brings BATCH decided signals
    per arm in clusters of `cluster` whose win rate shifts by N(0, shift_sd²). `shared`: both
    arms trade the same pair-days (one shift per cluster for both) instead of their own."""
    looks, per_look = HORIZON // BATCH, BATCH // cluster
    shape = (runs, looks, per_look)
    shift_a = rng.normal(0.0, shift_sd, shape) if shift_sd else np.zeros(shape)
    shift_b = shift_a if shared else (rng.normal(0.0, shift_sd, shape) if shift_sd else shift_a)
    s_a = rng.binomial(cluster, np.clip(p_a + shift_a, 0, 1)).astype(np.float64)
    s_b = rng.binomial(cluster, np.clip(p_b + shift_b, 0, 1)).astype(np.float64)
    n, zero = np.full(shape, float(cluster)), np.zeros(shape)
    if shared:
        table = np.stack([n, s_a, n, s_b], -1)
        squares = np.stack([s_a, s_b], -1)
    else:
        table = np.concatenate(
            [np.stack([n, s_a, zero, zero], -1), np.stack([zero, zero, n, s_b], -1)], axis=2
        )
        squares = np.concatenate([np.stack([s_a, zero], -1), np.stack([zero, s_b], -1)], axis=2)
    return accumulate(sums_from_table(table, squares))


def paths(sums: ClusterSums, plans: dict[str, SequentialPlan]) -> dict[str, SequentialPath]:
    diff = difference(sums)
    v_iid, v_cluster = diff.variance_iid, np.fmax(diff.variance_cluster, 1e-12)
    variants = {
        "": diff,  # CR1, floored at the iid variance: what the library uses
        "|naive": Difference(diff.theta_hat, v_iid, v_iid, v_iid),  # binomial, independent
        "|cr1_only": Difference(diff.theta_hat, v_cluster, v_cluster, v_iid),  # no iid floor
    }
    n_a, n_b = sums.first[..., 0], sums.first[..., 2]
    return {
        f"{k}{suffix}": sequential_path(d, n_a, n_b, plan)
        for suffix, d in variants.items()
        for k, plan in plans.items()
    }


def rates(
    rng: np.random.Generator, args: argparse.Namespace, plans: dict[str, SequentialPlan], **kw: Any
) -> dict[str, dict[str, float]]:
    """Share of runs declaring B, declaring A, and median decided per arm when B was declared."""
    found: dict[str, list[SequentialPath]] = {}
    for start in range(0, args.runs, args.chunk):
        chunk = simulate(rng, min(args.chunk, args.runs - start), **kw)
        for key, path in paths(chunk, plans).items():
            found.setdefault(key, []).append(path)
    out = {}
    for key, parts in found.items():
        winner = np.concatenate([p.winner for p in parts])
        at = np.concatenate([p.decided_at for p in parts])[winner == 1]
        out[key] = {
            "b_declared": float((winner == 1).mean()),
            "a_declared": float((winner == -1).mean()),
            "median_decided_per_arm_when_b": float((np.median(at) + 1) * BATCH) if at.size else 0,
        }
    return out


def srm_false_alarms(rng: np.random.Generator, runs: int, split_b: float = 0.5) -> float:
    """Share of correctly routed tests the SRM check ever flags over the default plan's looks
    (signals routed per look: 2 × BATCH / 0.8, a fifth of them still pending or breakeven)."""
    per_look = round(2 * BATCH / 0.8)
    to_b = np.cumsum(rng.binomial(per_look, split_b, (runs, MAX_DECIDED // BATCH)), axis=1)
    total = per_look * np.arange(1, MAX_DECIDED // BATCH + 1)
    flagged = np.vectorize(lambda b, n: srm_check(int(n - b), int(b), split_b).flagged)
    return float(flagged(to_b, total).any(axis=1).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=2_000, help="runs simulated at once")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    default = SequentialPlan()
    by_max = {f"max={m}": replace(default, max_decided_per_arm=m) for m in MAX_SAMPLES}
    by_tau = {f"tau={t}": replace(default, tau=t) for t in TAUS}
    plans = {"default": default} | by_max | by_tau
    iid = {"shift_sd": 0.0, "shared": False}
    icc = {"shift_sd": ICC_SHIFT_SD, "shared": False}
    started = time.perf_counter()
    scenarios = {
        "aa_iid": rates(rng, args, plans, p_a=0.5, p_b=0.5, **iid),
        "aa_clustered": rates(rng, args, plans, p_a=0.5, p_b=0.5, **icc),
        "aa_clustered_shared_days": rates(
            rng, args, plans, p_a=0.5, p_b=0.5, shift_sd=ICC_SHIFT_SD, shared=True
        ),
        # Few, large clusters and a mild ICC: CR1 alone is noisy and often too low here.
        "aa_few_large_clusters": rates(
            rng, args, plans, p_a=0.5, p_b=0.5, shift_sd=0.05, shared=False, cluster=50
        ),
        "lift_5pt_iid": rates(rng, args, plans, p_a=0.50, p_b=0.55, **iid),
        "lift_5pt_clustered": rates(rng, args, plans, p_a=0.50, p_b=0.55, **icc),
    }
    srm = srm_false_alarms(rng, args.runs)
    seconds = time.perf_counter() - started

    def fp(s: str, k: str = "default") -> float:
        return scenarios[s][k]["b_declared"] + scenarios[s][k]["a_declared"]

    checks = {
        "aa_false_positive_rate_le_alpha": fp("aa_iid") <= default.alpha,
        "clustered_aa_false_positive_rate_le_alpha": fp("aa_clustered") <= default.alpha,
        "naive_variance_exceeds_alpha_on_clustered_aa": fp("aa_clustered", "default|naive")
        > default.alpha,
        "power_ge_0.80": scenarios["lift_5pt_iid"]["default"]["b_declared"] >= 0.80,
    }
    result = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runs": args.runs,
        "seed": args.seed,
        "plan": default.__dict__,
        "batch_per_arm": BATCH,
        "cluster_size": CLUSTER,
        "icc_shift_sd": ICC_SHIFT_SD,
        "seconds": round(seconds, 2),
        "summary": {
            "aa_false_positive_rate": fp("aa_iid"),
            "clustered_aa_false_positive_rate": fp("aa_clustered"),
            "clustered_aa_false_positive_rate_naive": fp("aa_clustered", "default|naive"),
            "clustered_aa_false_positive_rate_cr1_without_iid_floor": fp(
                "aa_clustered", "default|cr1_only"
            ),
            "few_large_clusters_false_positive_rate": fp("aa_few_large_clusters"),
            "few_large_clusters_false_positive_rate_cr1_without_iid_floor": fp(
                "aa_few_large_clusters", "default|cr1_only"
            ),
            "clustered_shared_days_false_positive_rate": fp("aa_clustered_shared_days"),
            "power_5pt": scenarios["lift_5pt_iid"]["default"]["b_declared"],
            "wrong_winner_5pt": scenarios["lift_5pt_iid"]["default"]["a_declared"],
            "power_5pt_clustered": scenarios["lift_5pt_clustered"]["default"]["b_declared"],
            "srm_false_alarm_rate": srm,
        },
        "scenarios": scenarios,
        "checks": checks,
    }
    print(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
