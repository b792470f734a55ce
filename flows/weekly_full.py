"""Weekly full training (deployment `weekly-full`, Sundays 01:00 UTC): a model from scratch on
the last 30 days, registered in Staging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from aifx_ml.config import load_settings
from aifx_ml.training.config import training_config
from flows.training_tasks import training_steps


@flow(name="weekly-full", log_prints=False)
def weekly_full_flow(
    pairs: list[str] | None = None,
    timeframes: list[str] | None = None,
    days: int = 30,
    epochs: int = 50,
    batch_size: int = 32,
    window: int = 60,
    lstm_units: list[int] | None = None,
    dense_units: int = 32,
    seed: int = 42,
    learning_rate: float = 1e-3,
    as_of: datetime | None = None,
    auto_challenger: bool = True,
    challenger_split: float = 0.2,
    ab_test_plan: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train from scratch as of `as_of` (default: now, UTC) on every series asked for."""
    settings = load_settings()
    moment = as_of or datetime.now(UTC)
    config = training_config(
        pairs,
        timeframes or ["1h"],
        days=days,
        epochs=epochs,
        batch_size=batch_size,
        window=window,
        lstm_units=lstm_units or [128, 64],
        dense_units=dense_units,
        learning_rate=learning_rate,
        seed=seed,
    )
    result = training_steps(
        settings,
        config,
        "full",
        moment,
        "flow weekly-full",
        challenger_split if auto_challenger else None,
        ab_test_plan,
    )
    get_run_logger().info(
        "weekly full training %s: %s", result["status"], result["version"] or result["reason"]
    )
    return result


if __name__ == "__main__":
    weekly_full_flow()
