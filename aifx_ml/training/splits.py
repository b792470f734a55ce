"""How a training run splits its samples: `[train | purge | validation | purge | holdout]`,
chronological, and the minimum each part needs (too little data skips the run)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from aifx_ml.errors import InvalidInputError
from aifx_ml.features.dataset import Dataset, Split, chronological_split
from aifx_ml.training.config import TrainingConfig, TrainingSkipped


def split_for(dataset: Dataset, config: TrainingConfig, since: datetime) -> Split:
    """[train | purge | validation | purge | holdout] of a full training over the samples
    decided since `since` (a sweep's candidates split the same way)."""
    return split_samples(dataset, config, config.validation_fraction, since)


def split_samples(
    dataset: Dataset, config: TrainingConfig, validation_fraction: float, since: datetime
) -> Split:
    """[train | purge | validation | purge | holdout] over the samples decided since `since`."""
    try:
        split = chronological_split(
            dataset.samples, config.holdout_fraction, validation_fraction, since=pd.Timestamp(since)
        )
    except InvalidInputError as too_few:
        raise TrainingSkipped(f"too little data since {since.isoformat()}: {too_few}") from None
    _require_enough(split, config, since)
    return split


def _require_enough(split: Split, config: TrainingConfig, since: datetime) -> None:
    if (
        len(split.train) < config.min_train_samples
        or len(split.holdout) < config.min_holdout_samples
    ):
        raise TrainingSkipped(
            f"too little data since {since.isoformat()}: {len(split.train)} training and "
            f"{len(split.holdout)} holdout samples (need {config.min_train_samples} and "
            f"{config.min_holdout_samples})"
        )
