"""Daily incremental training (deployment `daily-incremental`, 01:00 UTC): the Production model
fine-tuned on what arrived since the last successful run, the child registered in Staging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from aifx_ml.config import load_settings
from aifx_ml.training.config import training_config
from flows.training_tasks import training_steps


@flow(name="daily-incremental", log_prints=False)
def daily_incremental_flow(
    pairs: list[str] | None = None,
    timeframes: list[str] | None = None,
    epochs: int = 5,
    batch_size: int = 32,
    seed: int = 42,
    as_of: datetime | None = None,
    auto_challenger: bool = True,
    challenger_split: float = 0.2,
    ab_test_plan: dict[str, Any] | None = None,
    days: int = 30,
    full_epochs: int = 50,
    window: int = 60,
    lstm_units: list[int] | None = None,
    dense_units: int = 32,
    learning_rate: float = 1e-3,
) -> dict[str, Any]:
    """Fine-tune as of `as_of` (default: now, UTC); with no Production model, train in full
    (`days`, `full_epochs` and the architecture are the weekly flow's, for that fallback)."""
    settings = load_settings()
    moment = as_of or datetime.now(UTC)
    config = training_config(
        pairs,
        timeframes or ["1h"],
        incremental_epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        days=days,
        epochs=full_epochs,
        window=window,
        lstm_units=lstm_units or [128, 64],
        dense_units=dense_units,
        learning_rate=learning_rate,
    )
    result = training_steps(
        settings,
        config,
        "incremental",
        moment,
        "flow daily-incremental",
        challenger_split if auto_challenger else None,
        ab_test_plan,
    )
    logger = get_run_logger()
    if result["fell_back_to_full"]:
        logger.warning("%s", result["reason"])
    logger.info(
        "daily incremental training %s: %s (parent %s)",
        result["status"],
        result["version"] or result["reason"],
        result["parent_version"],
    )
    return result


if __name__ == "__main__":
    daily_incremental_flow()
