"""Holdout metrics of probabilistic direction forecasts, and the comparison with baselines.

Baselines get probabilities too (estimated on the training part), so log-loss and Brier are
comparable; "lift" is the model's holdout accuracy minus the best baseline's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

EPS = 1e-7


@dataclass(frozen=True)
class HoldoutMetrics:
    """How well probabilities of "up" predicted the outcomes."""

    samples: int
    accuracy: float
    auc: float
    log_loss: float
    brier: float
    up_rate: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def holdout_metrics(y_true: npt.ArrayLike, p_up: npt.ArrayLike) -> HoldoutMetrics:
    """Accuracy (threshold 0.5), ROC AUC, log-loss, Brier score and the share of ups.

    Only the log-loss sees probabilities clipped away from 0 and 1 (to stay finite); AUC and
    Brier use them as given, so two confident scores are not made a tie.
    """
    y = np.asarray(y_true, dtype=np.float64)
    raw = np.asarray(p_up, dtype=np.float64)
    p = np.clip(raw, EPS, 1 - EPS)
    if len(y) == 0:
        nan = float("nan")
        return HoldoutMetrics(0, nan, nan, nan, nan, nan)
    return HoldoutMetrics(
        samples=len(y),
        accuracy=float(np.mean((raw >= 0.5) == (y == 1.0))),
        auc=roc_auc(y, raw),
        log_loss=float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        brier=float(np.mean((raw - y) ** 2)),
        up_rate=float(np.mean(y)),
    )


def roc_auc(y: npt.NDArray[np.float64], score: npt.NDArray[np.float64]) -> float:
    """P(a random up scores above a random down), ties counting half; NaN with one class."""
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # Average ranks over ties (Mann-Whitney U).
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def majority_baseline(y_train: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    """Always the training base rate of "up"."""
    rate = float(np.mean(np.asarray(y_train, dtype=np.float64))) if np.size(y_train) else 0.5
    return np.full(n, rate)


def persistence_baseline(
    y_train: npt.ArrayLike, last_move_train: npt.ArrayLike, last_move: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """ "Repeat the last move": P(up | last candle up) and P(up | down) as seen in training.

    With no history for a case, it falls back to "the move repeats" (1.0 after up, 0.0 after
    down) softened to 0.5 for a flat last candle.
    """
    y = np.asarray(y_train, dtype=np.float64)
    lm_train = np.asarray(last_move_train, dtype=np.float64)
    lm = np.asarray(last_move, dtype=np.float64)
    p_after_up = float(y[lm_train > 0].mean()) if (lm_train > 0).any() else 1.0
    p_after_down = float(y[lm_train < 0].mean()) if (lm_train < 0).any() else 0.0
    return np.select([lm > 0, lm < 0], [p_after_up, p_after_down], 0.5)


@dataclass(frozen=True)
class BaselineComparison:
    """The model against the baselines on one holdout."""

    model: HoldoutMetrics
    baselines: dict[str, HoldoutMetrics]
    best_baseline: str
    lift: float  # model accuracy - best baseline accuracy
    beats_baseline: bool

    def as_dict(self) -> dict[str, float | str | bool]:
        out: dict[str, float | str | bool] = dict(self.model.as_dict("holdout_"))
        for name, metrics in self.baselines.items():
            out.update(metrics.as_dict(f"baseline_{name}_"))
        out.update(
            best_baseline=self.best_baseline,
            lift_over_baseline=self.lift,
            beats_baseline=self.beats_baseline,
        )
        return out


def baseline_scores(
    y_holdout: npt.ArrayLike,
    y_train: npt.ArrayLike,
    last_move_train: npt.ArrayLike,
    last_move_holdout: npt.ArrayLike,
) -> dict[str, HoldoutMetrics]:
    """Every baseline, fit on the training part, scored on the holdout."""
    y = np.asarray(y_holdout, dtype=np.float64)
    return {
        name: holdout_metrics(y, p)
        for name, p in baseline_probabilities(
            y_train, last_move_train, last_move_holdout, len(y)
        ).items()
    }


def baseline_probabilities(
    y_train: npt.ArrayLike,
    last_move_train: npt.ArrayLike,
    last_move_holdout: npt.ArrayLike,
    n: int,
) -> dict[str, npt.NDArray[np.float64]]:
    """Every baseline's P(up) for the `n` holdout samples, fit on the training part."""
    return {
        "majority": majority_baseline(y_train, n),
        "persistence": persistence_baseline(y_train, last_move_train, last_move_holdout),
    }


def versus_baselines(
    model: HoldoutMetrics, baselines: dict[str, HoldoutMetrics]
) -> BaselineComparison:
    """Does the model beat the best baseline on the same holdout?

    "Beats" means a strictly higher accuracy and a log-loss no worse than every baseline's,
    so a model that is right more often only by being overconfident does not pass.
    """
    best = max(baselines, key=lambda k: (baselines[k].accuracy, -baselines[k].log_loss))
    lift = model.accuracy - baselines[best].accuracy
    beats = bool(lift > 0 and model.log_loss <= min(b.log_loss for b in baselines.values()))
    return BaselineComparison(model, baselines, best, float(lift), beats)


def compare_with_baselines(
    y_holdout: npt.ArrayLike,
    p_model: npt.ArrayLike,
    y_train: npt.ArrayLike,
    last_move_train: npt.ArrayLike,
    last_move_holdout: npt.ArrayLike,
) -> BaselineComparison:
    """Score the model and every baseline on the same holdout (see `versus_baselines`)."""
    model = holdout_metrics(y_holdout, p_model)
    return versus_baselines(
        model, baseline_scores(y_holdout, y_train, last_move_train, last_move_holdout)
    )
