"""The monthly evaluation's parameters and their one default each: the `monthly-evaluation`
flow, its deployment in prefect.yaml, `aifx evaluate monthly` and the Thresholds the evaluation
judges by all read them from here (tests/code/test_defaults_agree.py keeps them equal).

A module of its own, without the evaluation's imports: the CLI reads these defaults when it
starts, and the evaluation itself loads TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationParams:
    """When a version counts as degraded or drifted, and what a verdict of retrain does."""

    accuracy_drop: float = 0.05  # holdout accuracy minus the month's
    auc_drop: float = 0.05
    drift_share: float = 0.5  # share of input features found drifted
    # Start the weekly full training deployment where the verdict is retrain. Off when the flow
    # is run by hand (or by a replay, which retrains itself); the scheduled deployment turns it on.
    trigger_retrain: bool = False


EVALUATION = EvaluationParams()
