"""Scoring several models and the baselines on one holdout: the same samples for all.

Each model sees the samples through its own card (window length, scaler); a sample counts
only if every model can score it, so no model is judged on easier data than another. The
baselines are fit on the samples whose labels were known before the holdout began.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.metrics import HoldoutMetrics, baseline_scores, holdout_metrics
from aifx_ml.features.dataset import Dataset, build_dataset, naive_utc
from aifx_ml.models.card import ModelCard
from aifx_ml.models.predict import predict_proba

# A model to score: its Keras model and its card (window, scaler, features).
Scorable = tuple[Any, ModelCard]


@dataclass(frozen=True)
class HoldoutScores:
    """Every model's and baseline's metrics on the common holdout samples."""

    models: dict[str, HoldoutMetrics]
    baselines: dict[str, HoldoutMetrics]
    holdout: dict[str, Any]


def score_on_holdout(
    models: Mapping[str, Scorable], candles: pd.DataFrame, holdout_start: pd.Timestamp
) -> HoldoutScores:
    """Score `models` on the candle samples decided at or after `holdout_start`.

    `candles` is what `aifx_ml.data.candles.load_candles` returns (targets only where the
    horizon elapsed inside it), reaching back far enough before `holdout_start` to fit the
    baselines.
    """
    if not models:
        raise InvalidInputError("no models to score")
    start = naive_utc(holdout_start)
    datasets = {w: build_dataset(candles, w) for w in {c.window for _, c in models.values()}}
    keys = {w: _keys(d) for w, d in datasets.items()}
    holdout_keys = set.intersection(
        *(
            set(k[(d.samples.time >= start) & ~d.samples.from_signal].tolist())
            for k, d in zip(keys.values(), datasets.values(), strict=True)
        )
    )
    if not holdout_keys:
        raise InvalidInputError(f"no samples to score since {holdout_start.isoformat()}")
    common = np.array(sorted(holdout_keys))
    scores = {}
    for name, (model, card) in models.items():
        dataset = datasets[card.window]
        windows = card.windows(dataset, f"model {name}")
        rows = _positions(keys[card.window], common)
        p = predict_proba(model, windows, dataset.samples.rows[rows])
        scores[name] = holdout_metrics(dataset.samples.target[rows], p)
    # Baselines from one dataset, the same whatever order the models came in.
    window = max(datasets)
    s = datasets[window].samples
    held = _positions(keys[window], common)
    train = np.flatnonzero((s.label_end < start) & ~s.from_signal)
    baselines = baseline_scores(
        s.target[held], s.target[train], s.last_move[train], s.last_move[held]
    )
    holdout = {
        "start": pd.Timestamp(s.time[held].min(), tz="UTC").isoformat(),
        "end": pd.Timestamp(s.time[held].max(), tz="UTC").isoformat(),
        "samples": int(len(held)),
        "baseline_train_samples": int(len(train)),
    }
    return HoldoutScores(scores, baselines, holdout)


def _keys(dataset: Dataset) -> npt.NDArray[np.str_]:
    """A key per sample naming its series and decision time, comparable across windows."""
    end = dataset.samples.rows + dataset.window - 1
    series = np.empty(len(dataset.raw_features), dtype=object)
    for name, (lo, hi) in dataset.series_bounds.items():
        series[lo:hi] = name
    times = dataset.samples.time.astype("datetime64[s]").astype(str)
    return np.char.add(np.char.add(series[end].astype(str), "@"), times)


def _positions(keys: npt.NDArray[np.str_], wanted: npt.NDArray[np.str_]) -> npt.NDArray[np.intp]:
    """Indices of the candle samples (not signal examples) whose key is in `wanted`."""
    order = np.argsort(keys, kind="stable")
    found = np.searchsorted(keys[order], wanted)
    return np.sort(order[found])
