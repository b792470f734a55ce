"""Evaluation: naive baselines, holdout metrics and comparisons."""
