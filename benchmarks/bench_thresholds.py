"""How often a version finds a threshold of its own, with and without an edge.

A simulated validation split of n samples: a network whose output is a narrow sigmoid of a
score, outcomes whose true chance of "up" leans `slope` on the same score (slope 0: no edge at
all), and a persistence baseline with no edge. Each split is Platt-calibrated and its
thresholds chosen (`aifx_ml.models.calibration`) by today's rule (the lower end of the
precision's 95% Wilson interval must reach the best baseline's), by a one-sided 95% bound
instead (z = 1.645), and by the rule before them (the point estimate must beat it by 2 points).
Per cell: the share of trainings that found a threshold in either direction; with slope 0 every
one of them is a false edge. Prints one JSON object.

    python benchmarks/bench_thresholds.py [RUNS]      # default 1000 per cell
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np

from aifx_ml.intervals import Z95
from aifx_ml.models.calibration import choose_thresholds, fit_platt

SIZES = (120, 400, 1000)  # validation samples: a weekly run's split holds 100 to a few hundred
SLOPES = (0.0, 0.15, 0.3)
RULES = {
    "lower_bound": {"margin": 0.0, "z": Z95},
    "one_sided_bound": {"margin": 0.0, "z": 1.6448536269514722},
    "point_plus_2": {"margin": 0.02, "z": 0.0},
}
MAX_FALSE_EDGE = 0.10  # target: a model with no edge finds a threshold in at most this share


def accuracy_of(slope: float, rng: np.random.Generator) -> float:
    """The best accuracy a model of this slope can have (calling the likelier side)."""
    score = rng.normal(size=400_000)
    chance = 1 / (1 + np.exp(-slope * score))
    return float(np.mean(np.maximum(chance, 1 - chance)))


def found(n: int, slope: float, runs: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(RULES, 0)
    for _ in range(runs):
        score = rng.normal(size=n)
        raw = 1 / (1 + np.exp(-0.3 * score))
        y = (rng.random(n) < 1 / (1 + np.exp(-slope * score))).astype(float)
        persistence = np.where(rng.random(n) < 0.5, 0.6, 0.4)
        calibrated = fit_platt(raw, y)(raw)
        for name, rule in RULES.items():
            chosen = choose_thresholds(calibrated, y, {"persistence": persistence}, **rule)
            hits[name] += chosen.buy is not None or chosen.sell is not None
    return {name: count / runs for name, count in hits.items()}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    began = time.perf_counter()
    rng = np.random.default_rng(0)
    cells = []
    for i, slope in enumerate(SLOPES):
        accuracy = accuracy_of(slope, rng)
        for j, n in enumerate(SIZES):
            cells.append(
                {
                    "validation_samples": n,
                    "slope": slope,
                    "true_accuracy": round(accuracy, 3),
                    "found_a_threshold": found(n, slope, runs, seed=100 * i + j),
                }
            )
    null = [c["found_a_threshold"]["lower_bound"] for c in cells if c["slope"] == 0.0]
    print(
        json.dumps(
            {
                "benchmark": "version_thresholds",
                "runs_per_cell": runs,
                "cells": cells,
                "targets": {
                    "no_edge_finds_a_threshold_at_most": MAX_FALSE_EDGE,
                    "worst_no_edge_rate": max(null),
                    "met": max(null) <= MAX_FALSE_EDGE,
                },
                "seconds": round(time.perf_counter() - began, 1),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
