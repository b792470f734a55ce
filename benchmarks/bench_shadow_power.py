"""Benchmark: the shadow (paired) test against the split test, on the same simulated traffic.

Prints one JSON object to stdout; exits 1 if a check fails. The stream and both tests are
`aifx_ml.abtest.power` (the library's own decision code): days of 25 requests of one pair
(a day is a cluster, its market shifts every answer's chance to win by N(0, 0.10²)), every
signal decided, the challenger agreeing with Production on 60, 80 or 95 % of requests and
opposed to it on the rest. Both tests are looked at after every day: the split test (20 % of
requests to the challenger) after every 25 decided signals, the shadow test after every 25
requests (50 decided signals, 25 per arm). The plan is the default one but without a maximum
sample, so that "requests needed for 80 % power" is measured rather than cut off.

Checks (issue 14): at 80 % agreement the shadow test reaches 80 % power for a +5-point lift
within a third of the requests the split test needs; with no lift (A/A) neither declares a
winner in more than 5 % of runs, at any agreement.

    .venv/bin/python benchmarks/bench_shadow_power.py [--runs N] [--seed S] [--chunk C]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from aifx_ml.abtest.power import Stream, days_to_power, power_by_day, simulate
from aifx_ml.abtest.stats import SequentialPath, SequentialPlan

AGREEMENTS = (0.6, 0.8, 0.95)
LIFT = 0.05
DAYS = 800  # 20,000 requests: past what the split test needs for 80 % power
TARGET = 0.8


def run(
    rng: np.random.Generator, stream: Stream, plan: SequentialPlan, runs: int, chunk: int
) -> dict[str, Any]:
    """Both tests over `runs` streams: power by day, declared winners, days to 80 % power."""
    parts: dict[str, list[SequentialPath]] = {"split": [], "shadow": []}
    for start in range(0, runs, chunk):
        paths = simulate(rng, min(chunk, runs - start), stream, plan)
        parts["split"].append(paths.split)
        parts["shadow"].append(paths.shadow)
    out: dict[str, Any] = {}
    for name, chunks in parts.items():
        path = SequentialPath(
            np.empty(0),
            np.concatenate([p.decided_at for p in chunks]),
            np.concatenate([p.winner for p in chunks]),
        )
        power = power_by_day(path, stream.days)
        days = days_to_power(power, TARGET)
        at = path.decided_at[path.winner == 1]
        out[name] = {
            "b_declared": float((path.winner == 1).mean()),
            "a_declared": float((path.winner == -1).mean()),
            "days_to_80pct_power": days,
            "requests_to_80pct_power": None if days is None else days * stream.requests_per_day,
            "median_requests_when_b": float((np.median(at) + 1) * stream.requests_per_day)
            if at.size
            else None,
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=250, help="runs simulated at once")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    plan = replace(SequentialPlan(), max_decided_per_arm=10**6)
    started = time.perf_counter()
    lifted, null = {}, {}
    for agreement in AGREEMENTS:
        key = f"agreement={agreement:.0%}"
        stream = Stream(agreement=agreement, lift=LIFT, days=DAYS)
        lifted[key] = run(rng, stream, plan, args.runs, args.chunk)
        null[key] = run(rng, replace(stream, lift=0.0), plan, args.runs, args.chunk)
    seconds = time.perf_counter() - started

    def false_winner(scenario: dict[str, Any], test: str) -> float:
        return float(scenario[test]["b_declared"] + scenario[test]["a_declared"])

    at_80 = lifted["agreement=80%"]
    split_days = at_80["split"]["days_to_80pct_power"]
    shadow_days = at_80["shadow"]["days_to_80pct_power"]
    ratio = None if not (split_days and shadow_days) else shadow_days / split_days
    aa = {k: {t: false_winner(v, t) for t in ("split", "shadow")} for k, v in null.items()}
    checks = {
        "shadow_needs_at_most_a_third_of_split_at_80pct_agreement": ratio is not None
        and ratio <= 1 / 3,
        "aa_false_winner_le_alpha_split": all(v["split"] <= plan.alpha for v in aa.values()),
        "aa_false_winner_le_alpha_shadow": all(v["shadow"] <= plan.alpha for v in aa.values()),
    }
    result = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runs_per_scenario": args.runs,
        "seed": args.seed,
        "stream": {
            k: v for k, v in asdict(Stream(lift=LIFT, days=DAYS)).items() if k != "agreement"
        },  # fmt: skip
        "plan": asdict(plan),
        "looks": "after every day: 25 decided signals (split), 25 requests = 50 (shadow)",
        "seconds": round(seconds, 2),
        "summary": {
            "requests_to_80pct_power_at_80pct_agreement": {
                "split": None if split_days is None else split_days * 25,
                "shadow": None if shadow_days is None else shadow_days * 25,
                "shadow_over_split": None if ratio is None else round(ratio, 3),
            },
            "requests_to_80pct_power_by_agreement": {
                k: {t: v[t]["requests_to_80pct_power"] for t in ("split", "shadow")}
                for k, v in lifted.items()
            },
            "aa_false_winner_rate": aa,
        },
        "lift_5pt": lifted,
        "aa": null,
        "checks": checks,
    }
    print(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
