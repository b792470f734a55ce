"""The monthly check of a model version: does it still work?

Pure computation over data handed in: the version's model and card, candles of its training
window (the reference) and of the month (the current data). Input drift and classification
quality come from one Evidently report (reference vs month, per sample: the features of the
candle the decision was made on, the target, the model's P(up)); degradation is judged
against the version's own training-time holdout metrics; a recommendation follows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from aifx_ml.domain import ModelStatus, Recommendation
from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.metrics import holdout_metrics
from aifx_ml.evaluation.params import EVALUATION
from aifx_ml.features.dataset import Dataset, build_dataset, naive_utc
from aifx_ml.jsonsafe import finite
from aifx_ml.models.card import ModelCard
from aifx_ml.models.predict import predict_proba

REFERENCE_ROWS = 5000  # more rows make the report slower, not the drift measure better
# Drift is measured with the population stability index (PSI). Oscillators and positions do
# not scale with volatility: a PSI above the customary 0.2 means their shape changed. Returns,
# ranges and gaps to averages grow and shrink with the volatility regime from one month to the
# next in any FX market (and in the synthetic one): only a PSI above 1.0 — volatility far
# outside anything seen in training — counts for them. Measured on synthetic markets, this
# separates a changed regime (share of drifted features 0.71-0.76) from an unchanged one
# (0.00-0.18) over five seeds; a single 0.2 threshold flagged 35-76% of features without change.
SHAPE_FEATURES = frozenset({"log_volume_change", "rsi", "bb_position", "adx", "stoch_k", "stoch_d"})
PSI_SHAPE, PSI_SCALE = 0.2, 1.0


@dataclass(frozen=True)
class Thresholds:
    """When a version counts as degraded or drifted."""

    accuracy_drop: float = EVALUATION.accuracy_drop  # holdout accuracy minus the month's
    auc_drop: float = EVALUATION.auc_drop
    drift_share: float = EVALUATION.drift_share  # share of input features Evidently finds drifted
    min_samples: int = 50  # fewer decided samples in the month: quality is not judged


@dataclass
class VersionEvaluation:
    """One version over one month, with every number the verdict rests on."""

    version: str
    model_type: str
    status: str
    month: str
    samples: int
    accuracy: float | None
    auc: float | None
    log_loss: float | None
    brier: float | None
    holdout_accuracy: float | None
    holdout_auc: float | None
    drift_share: float
    drifted_features: list[str]
    degraded: bool
    drift: bool
    reasons: list[str] = field(default_factory=list)
    recommendation: Recommendation | None = None  # Production versions only
    rollback_to: str | None = None
    live: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = finite(asdict(self))
        return out


def month_bounds(month: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """'2026-10' → [2026-10-01, 2026-11-01) in UTC."""
    try:
        start = pd.Timestamp(f"{month}-01", tz="UTC")
    except ValueError:
        raise InvalidInputError(f"invalid month {month!r}: expected YYYY-MM") from None
    if len(month) != 7 or start.strftime("%Y-%m") != month:
        raise InvalidInputError(f"invalid month {month!r}: expected YYYY-MM")
    return start, start + pd.DateOffset(months=1)


def previous_month(moment: datetime) -> str:
    """The calendar month before the one `moment` is in, as YYYY-MM."""
    return (pd.Timestamp(moment).tz_convert("UTC").replace(day=1) - pd.Timedelta(days=1)).strftime(
        "%Y-%m"
    )


def scored_samples(
    model: Any,
    card: ModelCard,
    candles: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """Per sample decided in [start, end): the decision candle's features, target, P(up)."""
    dataset = build_dataset(candles, card.window)
    windows = card.windows(dataset)
    s = dataset.samples
    keep = np.flatnonzero((s.time >= naive_utc(start)) & (s.time < naive_utc(end)) & ~s.from_signal)
    p = predict_proba(model, windows, s.rows[keep]) if len(keep) else np.empty(0)
    return _frame(dataset, keep, p)


def evaluate_version(
    *,
    version: str,
    model_type: str,
    status: str,
    month: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    holdout: Mapping[str, Any],
    thresholds: Thresholds,
    live: Mapping[str, Any] | None = None,
) -> tuple[VersionEvaluation, str]:
    """The verdict on one version and the Evidently report (HTML) it rests on.

    `reference` and `current` are `scored_samples` of the training window and of the month.
    """
    if reference.empty:
        raise InvalidInputError(f"{version}: no samples in its training window to compare with")
    snapshot = _report(reference, current)
    drift_share, drifted = _drift(snapshot.dict(), list(_features(reference)))
    decided = current.dropna(subset=["target"])
    quality = holdout_metrics(decided["target"], decided["proba"]) if len(decided) else None
    h_acc, h_auc = _num(holdout.get("holdout_accuracy")), _num(holdout.get("holdout_auc"))
    reasons: list[str] = []
    degraded = False
    if quality is not None and quality.samples >= thresholds.min_samples:
        if h_acc is not None and h_acc - quality.accuracy > thresholds.accuracy_drop:
            degraded = True
            reasons.append(
                f"accuracy {quality.accuracy:.3f} vs {h_acc:.3f} on its holdout "
                f"(drop > {thresholds.accuracy_drop})"
            )
        if h_auc is not None and h_auc - quality.auc > thresholds.auc_drop:
            degraded = True
            reasons.append(
                f"AUC {quality.auc:.3f} vs {h_auc:.3f} on its holdout "
                f"(drop > {thresholds.auc_drop})"
            )
    else:
        reasons.append(f"only {len(decided)} decided samples this month: quality not judged")
    drift = drift_share >= thresholds.drift_share
    if drift:
        reasons.append(
            f"{len(drifted)} of {len(_features(reference))} input features drifted "
            f"(share {drift_share:.2f} >= {thresholds.drift_share})"
        )
    evaluation = VersionEvaluation(
        version=version,
        model_type=model_type,
        status=status,
        month=month,
        samples=int(len(decided)),
        accuracy=quality.accuracy if quality else None,
        auc=quality.auc if quality else None,
        log_loss=quality.log_loss if quality else None,
        brier=quality.brier if quality else None,
        holdout_accuracy=h_acc,
        holdout_auc=h_auc,
        drift_share=drift_share,
        drifted_features=drifted,
        degraded=degraded,
        drift=drift,
        reasons=reasons,
        live=dict(live or {}),
    )
    return evaluation, snapshot.get_html_str(as_iframe=False)


def recommend(
    production: VersionEvaluation, others: Sequence[VersionEvaluation]
) -> tuple[Recommendation, str | None]:
    """keep, retrain, or roll back to a recent version that did clearly better this month."""
    if production.degraded and production.accuracy is not None:
        better = [
            o
            for o in others
            if not o.degraded and o.accuracy is not None and o.accuracy > production.accuracy + 0.02
        ]
        if better:
            best = max(better, key=lambda o: o.accuracy or 0.0)
            return Recommendation.ROLLBACK, best.version
        return Recommendation.RETRAIN, None
    if production.drift:
        return Recommendation.RETRAIN, None
    return Recommendation.KEEP, None


def wants_retrain(summary: Mapping[str, Any]) -> bool:
    """Whether an evaluation's summary asks for a retraining of its (Production) version."""
    return (
        summary.get("status") == ModelStatus.PRODUCTION
        and summary.get("recommendation") == Recommendation.RETRAIN
    )


def _report(reference: pd.DataFrame, current: pd.DataFrame) -> Any:
    from evidently import BinaryClassification, DataDefinition, Dataset, Report  # noqa: PLC0415  (Evidently takes seconds to import: only when a report is built)
    from evidently.presets import ClassificationPreset, DataDriftPreset  # noqa: PLC0415  (Evidently takes seconds to import: only when a report is built)

    features = list(_features(reference))
    definition = DataDefinition(
        numerical_columns=features,
        classification=[
            BinaryClassification(
                target="target", prediction_labels="prediction", prediction_probas="proba"
            )
        ],
    )
    ref = reference.dropna(subset=["target"])
    if len(ref) > REFERENCE_ROWS:
        ref = ref.sample(REFERENCE_ROWS, random_state=0)
    cur = current.dropna(subset=["target"]) if current["target"].notna().any() else current
    thresholds = {f: PSI_SHAPE if f in SHAPE_FEATURES else PSI_SCALE for f in features}
    report = Report(
        [
            DataDriftPreset(columns=features, num_method="psi", per_column_threshold=thresholds),
            ClassificationPreset(),
        ]
    )
    return report.run(
        Dataset.from_pandas(cur.reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(ref.reset_index(drop=True), data_definition=definition),
    )


def _drift(result: dict[str, Any], features: list[str]) -> tuple[float, list[str]]:
    """Share of drifted features and their names from a snapshot's metrics (p < threshold)."""
    drifted = []
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        column = config.get("column")
        if not str(config.get("type", "")).endswith("ValueDrift") or column not in features:
            continue
        value, threshold = float(metric.get("value", np.nan)), float(config.get("threshold", 0.05))
        method = str(config.get("method", ""))
        # p-value methods drift below the threshold; distance methods above it.
        if ("p_value" in method and value < threshold) or (
            "p_value" not in method and value >= threshold
        ):
            drifted.append(str(column))
    return (len(drifted) / len(features) if features else 0.0), sorted(drifted)


def _frame(dataset: Dataset, keep: np.ndarray[Any, Any], p: np.ndarray[Any, Any]) -> pd.DataFrame:
    s = dataset.samples
    ends = s.rows[keep] + dataset.window - 1
    frame = pd.DataFrame(dataset.raw_features[ends], columns=list(dataset.feature_names))
    frame["target"] = s.target[keep].astype(np.int64)
    frame["proba"] = p
    frame["prediction"] = (p >= 0.5).astype(np.int64)
    frame["time"] = s.time[keep]
    return frame


def _features(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("target", "proba", "prediction", "time")]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else None
