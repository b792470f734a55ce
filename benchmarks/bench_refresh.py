"""Benchmark: how often the refresh rule lets a fresher version replace Production, by
simulation (`aifx_ml.evaluation.refresh.refresh_rates`, the library's own bound).

Prints one JSON object. A version truly worse by 2δ (2 accuracy points) should rarely be
refreshed in; a truly equal one should usually be. The holdout is hourly samples of one or
two pairs over one or two weeks (what the gate scores a weekly version on), each day a
cluster whose market shifts every call's chance to be right by N(0, 0.10²); the two models
agree on 60, 80 or 95 % of samples. Rates are given at the default one-sided level (95 %)
and at 80 %, to show the trade-off the level sets.

    .venv/bin/python benchmarks/bench_refresh.py [--runs N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from aifx_ml.evaluation.refresh import DEFAULT_LEVEL, DEFAULT_MARGIN, refresh_rates

AGREEMENTS = (0.6, 0.8, 0.95)
HOLDOUTS = {"1 pair, 7 days": (24, 7), "2 pairs, 7 days": (48, 7), "2 pairs, 14 days": (48, 14)}
LEVELS = (DEFAULT_LEVEL, 0.8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for holdout, (per_day, days) in HOLDOUTS.items():
        for agreement in AGREEMENTS:
            for level in LEVELS:
                key = f"{holdout}, agreement {agreement:.0%}, level {level:.0%}"
                rates[key] = {
                    f"refreshed_when_{name}": refresh_rates(
                        rng,
                        args.runs,
                        gap=gap,
                        samples_per_day=per_day,
                        days=days,
                        agreement=agreement,
                        margin=DEFAULT_MARGIN,
                        level=level,
                    )  # fmt: skip
                    for name, gap in (("worse_by_2_delta", -2 * DEFAULT_MARGIN), ("equal", 0.0))
                }
    result = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runs_per_cell": args.runs,
        "seed": args.seed,
        "margin_delta": DEFAULT_MARGIN,
        "default_level": DEFAULT_LEVEL,
        "day_sd": 0.10,
        "seconds": round(time.perf_counter() - started, 2),
        "rates": rates,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
