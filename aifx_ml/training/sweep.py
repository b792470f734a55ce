"""Candidate sweeps for the weekly full training: K configurations, fitted apart (in parallel
on a task runner), the best chosen on its validation split only.

The holdout the gate judges on is never seen by the choice: each candidate early-stops and
is ranked on its validation loss (the split `[train | purge | validation | purge | holdout]`
of `features.dataset`). The chosen one is then finished by `train_full` like a single
training (holdout metrics, calibration, registration); the others stay in the model store as
nested runs of the weekly run, with their parameters, curves and validation scores.

`candidates` and `best` are pure; `fit_candidate` fits one candidate on data it is given and
returns plain values (weights as NumPy arrays), so it runs on any worker.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.errors import InvalidInputError
from aifx_ml.features.dataset import build_dataset, scaler_for
from aifx_ml.models.calibration import log_loss
from aifx_ml.models.lstm import build_lstm
from aifx_ml.models.predict import predict_proba
from aifx_ml.training.config import TrainingConfig
from aifx_ml.training.splits import split_for

# The dimensions a search space may vary, each a list of values to draw from.
DIMENSIONS = ("window", "lstm_units", "dense_units", "learning_rate", "dropout")


@dataclass(frozen=True)
class SearchSpace:
    """Values to try per dimension; a dimension left empty keeps the base configuration's."""

    window: tuple[int, ...] = ()
    lstm_units: tuple[tuple[int, int], ...] = ()
    dense_units: tuple[int, ...] = ()
    learning_rate: tuple[float, ...] = ()
    dropout: tuple[float, ...] = ()  # one rate for the three dropout layers

    @classmethod
    def from_mapping(cls, values: Mapping[str, Sequence[Any]] | None) -> SearchSpace:
        """From a flow parameter or `prefect.yaml` (lists of values); one clear error on a bad
        name or value."""
        values = values or {}
        unknown = sorted(set(values) - set(DIMENSIONS))
        if unknown:
            raise InvalidInputError(
                f"unknown search dimension(s) {', '.join(unknown)}: "
                f"expected {', '.join(DIMENSIONS)}"
            )
        try:
            space = cls(
                window=tuple(_positive_int("window", v) for v in values.get("window", ())),
                lstm_units=tuple(_units(v) for v in values.get("lstm_units", ())),
                dense_units=tuple(
                    _positive_int("dense_units", v) for v in values.get("dense_units", ())
                ),
                learning_rate=tuple(
                    _fraction("learning_rate", v, 0, 1) for v in values.get("learning_rate", ())
                ),
                dropout=tuple(
                    _fraction("dropout", v, 0, 1, closed_low=True)
                    for v in values.get("dropout", ())
                ),
            )
        except TypeError as exc:
            raise InvalidInputError(f"invalid search space: {exc}") from None
        return space


def candidates(base: TrainingConfig, space: SearchSpace, k: int, seed: int) -> list[TrainingConfig]:
    """`k` distinct configurations: the base first, then draws (by `seed`) from the grid the
    space spans around it. K = 1 is the base alone, the training of every week before sweeps."""
    if k < 1:
        raise InvalidInputError(f"invalid candidates {k}: expected at least 1")
    grid = list(itertools.product(*[getattr(space, d) or (_value(base, d),) for d in DIMENSIONS]))
    own = tuple(_value(base, d) for d in DIMENSIONS)
    others = [combo for combo in grid if combo != own]
    if k - 1 > len(others):
        raise InvalidInputError(
            f"asked for {k} candidates but the search space holds {len(others) + 1} "
            "configurations (the base one included): widen it or ask for fewer"
        )
    drawn = random.Random(seed).sample(others, k - 1)
    return [base, *[_with(base, dict(zip(DIMENSIONS, combo, strict=True))) for combo in drawn]]


@dataclass(frozen=True)
class CandidateFit:
    """One fitted candidate: its configuration, how it scored on its validation split, its
    per-epoch curves and its weights (plain arrays: it crosses processes)."""

    index: int
    config: TrainingConfig
    validation_loss: float
    validation_accuracy: float
    epochs_run: int
    history: dict[str, list[float]]
    weights: list[npt.NDArray[Any]] = field(repr=False)

    def params(self) -> dict[str, Any]:
        return {f"lstm_{k}": v for k, v in self.config.lstm.to_dict().items()}

    def metrics(self) -> dict[str, float]:
        return {
            "validation_loss": self.validation_loss,
            "validation_accuracy": self.validation_accuracy,
            "epochs_run": float(self.epochs_run),
        }


def best(fits: Sequence[CandidateFit]) -> CandidateFit:
    """The lowest validation loss; a tie goes to the earlier candidate (the base first).
    A candidate whose loss is not finite never wins over one whose loss is."""
    if not fits:
        raise InvalidInputError("no candidates were fitted")
    return min(
        fits, key=lambda f: (not math.isfinite(f.validation_loss), f.validation_loss, f.index)
    )


def fit_candidate(
    index: int,
    config: TrainingConfig,
    candles: pd.DataFrame,
    signals: pd.DataFrame | None,
    since: datetime,
) -> CandidateFit:
    """Fit one candidate on the training part of the split `train_full` would make (its own
    window length decides which samples exist) and score it on the validation part."""
    from aifx_ml.training.fit import fit_full  # noqa: PLC0415  (TensorFlow: only when fitting)

    dataset = build_dataset(candles, config.lstm.window, signals)
    split = split_for(dataset, config, since)
    if len(split.validation) == 0:
        raise InvalidInputError(
            "a candidate sweep needs a validation split to choose on (validation_fraction > 0)"
        )
    scaler = scaler_for(dataset, split)
    windows = dataset.windows(scaler)
    lstm = replace(config.lstm, n_features=len(dataset.feature_names), window=dataset.window)
    model = build_lstm(lstm, seed=config.seed)
    history = fit_full(model, windows, dataset.samples, split, config)
    s = dataset.samples
    p = predict_proba(model, windows, s.rows[split.validation])
    outcome = s.target[split.validation]
    loss, accuracy = log_loss(p, outcome), float(np.mean((p >= 0.5) == (outcome == 1)))
    return CandidateFit(
        index=index,
        config=replace(config, lstm=lstm),
        validation_loss=float(loss),
        validation_accuracy=float(accuracy),
        epochs_run=len(history.get("loss", [])),
        history={k: [float(x) for x in v] for k, v in history.items()},
        weights=[np.asarray(w) for w in model.get_weights()],
    )


# Fits every candidate (index, config) on the same candles and signals, decided since a moment:
# `fit_each` in this process, or a flow's mapping over a task runner's workers.
FitCandidates = Callable[
    [Sequence[TrainingConfig], pd.DataFrame, pd.DataFrame | None, datetime], Sequence[CandidateFit]
]


def fit_each(
    configs: Sequence[TrainingConfig],
    candles: pd.DataFrame,
    signals: pd.DataFrame | None,
    since: datetime,
) -> list[CandidateFit]:
    """Every candidate, one after another, in this process."""
    return [fit_candidate(i, c, candles, signals, since) for i, c in enumerate(configs)]


def widest(base: TrainingConfig, configs: Sequence[TrainingConfig]) -> TrainingConfig:
    """`base` with the longest window of `configs`: what loading must cover for all."""
    window = max([base.lstm.window, *(c.lstm.window for c in configs)])
    return replace(base, lstm=replace(base.lstm, window=window))


def _value(config: TrainingConfig, dimension: str) -> Any:
    if dimension == "dropout":
        return config.lstm.dropout[0]
    return getattr(config.lstm, dimension)


def _with(base: TrainingConfig, values: Mapping[str, Any]) -> TrainingConfig:
    lstm = replace(
        base.lstm,
        window=values["window"],
        lstm_units=values["lstm_units"],
        dense_units=values["dense_units"],
        learning_rate=values["learning_rate"],
    )
    if values["dropout"] != base.lstm.dropout[0]:
        lstm = replace(lstm, dropout=(values["dropout"],) * 3)
    return replace(base, lstm=lstm)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(
            f"invalid {name} {value!r} in the search space: expected a positive integer"
        )
    return value


def _units(value: Any) -> tuple[int, int]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise InvalidInputError(
            f"invalid lstm_units {value!r} in the search space: expected pairs like [128, 64]"
        )
    return (_positive_int("lstm_units", value[0]), _positive_int("lstm_units", value[1]))


def _fraction(name: str, value: Any, low: float, high: float, closed_low: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and (low <= value < high if closed_low else low < value < high):
        return float(value)
    bounds = f"[{low}, {high})" if closed_low else f"({low}, {high})"
    raise InvalidInputError(f"invalid {name} {value!r} in the search space: expected {bounds}")
