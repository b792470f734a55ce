"""Scoring several models and the baselines on one holdout: the same samples for all.

Each model sees the samples through its own card (window length, scaler); a sample counts
only if every model can score it, so no model is judged on easier data than another. The
baselines are fit on the samples whose labels were known before the holdout began.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.metrics import (
    HoldoutMetrics,
    baseline_probabilities,
    baseline_scores,
    holdout_metrics,
)
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
    # Per holdout sample (the same samples for all): 1.0 where the call was right, and the
    # sample's series|day cluster code, for paired comparisons (`evaluation.refresh`).
    correct: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict, compare=False)
    baseline_correct: dict[str, npt.NDArray[np.float64]] = field(
        default_factory=dict, compare=False
    )
    clusters: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, np.int64), compare=False
    )


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
    scores, correct = {}, {}
    for name, (model, card) in models.items():
        dataset = datasets[card.window]
        windows = card.windows(dataset, f"model {name}")
        rows = _positions(keys[card.window], common)
        p = predict_proba(model, windows, dataset.samples.rows[rows])
        scores[name] = holdout_metrics(dataset.samples.target[rows], p)
        correct[name] = _right(dataset.samples.target[rows], p)
    # Baselines from one dataset, the same whatever order the models came in.
    window = max(datasets)
    s = datasets[window].samples
    held = _positions(keys[window], common)
    train = np.flatnonzero((s.label_end < start) & ~s.from_signal)
    baselines = baseline_scores(
        s.target[held], s.target[train], s.last_move[train], s.last_move[held]
    )
    baseline_p = baseline_probabilities(
        s.target[train], s.last_move[train], s.last_move[held], len(held)
    )
    series_day = [key.rsplit("@", 1)[0] + "|" + key.rsplit("@", 1)[1][:10] for key in common]
    holdout = {
        "start": pd.Timestamp(s.time[held].min(), tz="UTC").isoformat(),
        "end": pd.Timestamp(s.time[held].max(), tz="UTC").isoformat(),
        "samples": int(len(held)),
        "baseline_train_samples": int(len(train)),
    }
    return HoldoutScores(
        scores,
        baselines,
        holdout,
        correct,
        {name: _right(s.target[held], p) for name, p in baseline_p.items()},
        pd.factorize(pd.Series(series_day))[0].astype(np.int64),
    )


def _right(y: npt.ArrayLike, p_up: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """1.0 where P(up) >= 0.5 called the move (as `holdout_metrics` counts accuracy)."""
    right = (np.asarray(p_up) >= 0.5) == (np.asarray(y) == 1.0)
    return np.asarray(right, dtype=np.float64)


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
