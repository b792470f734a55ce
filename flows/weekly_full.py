"""Weekly full training (deployment `weekly-full`, Sundays 01:00 UTC): a model from scratch on
the last 30 days, registered in Staging."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from aifx_ml.config import load_settings
from aifx_ml.domain import TestMode, TrainingType
from aifx_ml.training.config import (
    TRAINING,
    ChallengerPolicy,
    TrainingResult,
    training_config,
)
from aifx_ml.training.sweep import SearchSpace
from aifx_ml.training.sweep import candidates as sweep_candidates
from flows.runner import FROM_SETTINGS
from flows.training_tasks import training_steps


@flow(name="weekly-full", log_prints=False, task_runner=FROM_SETTINGS)
def weekly_full_flow(
    pairs: Sequence[str] | None = TRAINING.pairs,
    timeframes: Sequence[str] = TRAINING.timeframes,
    days: int = TRAINING.days,
    epochs: int = TRAINING.epochs,
    batch_size: int = TRAINING.batch_size,
    window: int = TRAINING.window,
    lstm_units: Sequence[int] = TRAINING.lstm_units,
    dense_units: int = TRAINING.dense_units,
    seed: int = TRAINING.seed,
    learning_rate: float = TRAINING.learning_rate,
    as_of: datetime | None = None,
    auto_challenger: bool = TRAINING.auto_challenger,
    challenger_mode: TestMode = TRAINING.challenger_mode,
    challenger_split: float = TRAINING.challenger_split,
    ab_test_plan: dict[str, Any] | None = TRAINING.ab_test_plan,
    refresh_days: float = TRAINING.refresh_days,
    keep_waiting: int = TRAINING.keep_waiting,
    candidates: int = TRAINING.candidates,
    search_space: dict[str, list[Any]] = TRAINING.search_space,
) -> TrainingResult:
    """Train from scratch as of `as_of` (default: now, UTC) on every series asked for; with
    `candidates` > 1, that many configurations (these parameters', then draws from
    `search_space`) are fitted on the task runner and the best on the validation split is
    the one registered. Every other default is TRAINING's (aifx_ml/training/config.py)."""
    settings = load_settings()
    moment = as_of or datetime.now(UTC)
    config = training_config(
        pairs,
        timeframes,
        days=days,
        epochs=epochs,
        batch_size=batch_size,
        window=window,
        lstm_units=lstm_units,
        dense_units=dense_units,
        learning_rate=learning_rate,
        seed=seed,
    )
    challenger = (
        ChallengerPolicy(
            mode=challenger_mode,
            split=challenger_split,
            plan=ab_test_plan,
            refresh_days=refresh_days,
            keep_waiting=keep_waiting,
        )
        if auto_challenger
        else None
    )
    result = training_steps(
        settings,
        config,
        TrainingType.FULL,
        moment,
        "flow weekly-full",
        challenger,
        sweep_candidates(config, SearchSpace.from_mapping(search_space), candidates, seed),
    )
    get_run_logger().info(
        "weekly full training %s: %s", result.status, result.version or result.reason
    )
    return result


if __name__ == "__main__":
    weekly_full_flow()
