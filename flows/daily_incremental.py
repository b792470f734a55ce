"""Daily incremental training (deployment `daily-incremental`, 01:00 UTC): the Production model
fine-tuned on what arrived since the last successful run, the child registered in Staging."""

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
from flows.runner import FROM_SETTINGS
from flows.training_tasks import training_steps


@flow(name="daily-incremental", log_prints=False, task_runner=FROM_SETTINGS)
def daily_incremental_flow(
    pairs: Sequence[str] | None = TRAINING.pairs,
    timeframes: Sequence[str] = TRAINING.timeframes,
    epochs: int = TRAINING.incremental_epochs,
    batch_size: int = TRAINING.batch_size,
    seed: int = TRAINING.seed,
    as_of: datetime | None = None,
    auto_challenger: bool = TRAINING.auto_challenger,
    challenger_mode: TestMode = TRAINING.challenger_mode,
    challenger_split: float = TRAINING.challenger_split,
    ab_test_plan: dict[str, Any] | None = TRAINING.ab_test_plan,
    refresh_days: float = TRAINING.refresh_days,
    keep_waiting: int = TRAINING.keep_waiting,
    days: int = TRAINING.days,
    full_epochs: int = TRAINING.epochs,
    window: int = TRAINING.window,
    lstm_units: Sequence[int] = TRAINING.lstm_units,
    dense_units: int = TRAINING.dense_units,
    learning_rate: float = TRAINING.learning_rate,
) -> TrainingResult:
    """Fine-tune as of `as_of` (default: now, UTC); with no Production model, train in full
    (`days`, `full_epochs` and the architecture are the weekly flow's, for that fallback).
    Every default is TRAINING's (aifx_ml/training/config.py)."""
    settings = load_settings()
    moment = as_of or datetime.now(UTC)
    config = training_config(
        pairs,
        timeframes,
        incremental_epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        days=days,
        epochs=full_epochs,
        window=window,
        lstm_units=lstm_units,
        dense_units=dense_units,
        learning_rate=learning_rate,
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
        TrainingType.INCREMENTAL,
        moment,
        "flow daily-incremental",
        challenger,
    )
    logger = get_run_logger()
    if result.fell_back_to_full:
        logger.warning("%s", result.reason)
    logger.info(
        "daily incremental training %s: %s (parent %s)",
        result.status,
        result.version or result.reason,
        result.parent_version,
    )
    return result


if __name__ == "__main__":
    daily_incremental_flow()
