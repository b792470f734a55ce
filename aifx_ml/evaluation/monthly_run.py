"""The monthly evaluation over the stores: which versions, their data, where results go.

Every Production version is evaluated, and next to it the versions archived in the last two
months (the candidates for a rollback). Each gets an Evidently HTML report in the data
folder, a row in `model_evaluations`, and the summary in `model_versions.production_metrics`.
Loading a model and logging to MLflow are passed in (the registry and MLflow live outside).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, delete, func, or_, select, update

from aifx_ml.data.candles import load_candles
from aifx_ml.db import lookups
from aifx_ml.db.engine import session_factory, transaction
from aifx_ml.db.models import ModelEvaluation, ModelVersion, TradingSignal
from aifx_ml.domain import ModelStatus
from aifx_ml.errors import InvalidInputError
from aifx_ml.evaluation.monthly import (
    Thresholds,
    VersionEvaluation,
    evaluate_version,
    month_bounds,
    recommend,
    scored_samples,
)
from aifx_ml.markets import approx_step
from aifx_ml.models.card import ModelCard
from aifx_ml.models.store import LoadedModel, ModelStore

ARCHIVED_WITHIN = timedelta(days=62)


@dataclass
class MonthlyResult:
    """What one monthly evaluation found, per version, and where it put it."""

    month: str
    evaluations: list[VersionEvaluation] = field(default_factory=list)
    reports: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def production(self) -> list[VersionEvaluation]:
        return [e for e in self.evaluations if e.status == ModelStatus.PRODUCTION]


@dataclass
class MonthlyFlowResult:
    """What a monthly evaluation flow did: the month, each version's summary (as
    `VersionEvaluation.summary()`, with its report's path) and the retrainings it started
    (model type → flow run id, or why it could not start one)."""

    month: str
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    retrains: dict[str, str] = field(default_factory=dict)


def versions_to_evaluate(engine: Engine, month_start: datetime) -> list[ModelVersion]:
    """Production versions, and versions archived since two months before the month."""
    with session_factory(engine)() as session:
        return list(
            session.execute(
                select(ModelVersion)
                .where(
                    or_(
                        ModelVersion.status == ModelStatus.PRODUCTION,
                        (ModelVersion.status == ModelStatus.ARCHIVED)
                        & (ModelVersion.archived_at >= month_start - ARCHIVED_WITHIN),
                    )
                )
                .order_by(ModelVersion.model_type, ModelVersion.created_at)
            ).scalars()
        )


@dataclass(frozen=True)
class Evaluated:
    """One version's evaluation and its report (or why it could not be evaluated)."""

    version: str
    evaluation: VersionEvaluation | None = None
    html: str | None = None
    error: str | None = None


# Evaluates the named versions for (month, start, end, thresholds): in this process one after
# another (`evaluate_each`), or as tasks on a flow's task runner (one per version × series,
# then one per version).
EvaluateVersions = Callable[[Sequence[str]], Sequence[Evaluated]]
Series = tuple[str, str]  # (pair, timeframe)
CandleReader = Callable[[list[str], list[str], datetime, datetime], pd.DataFrame]


@dataclass(frozen=True)
class SeriesScores:
    """One version's samples on one of its series, scored by its model: those of its training
    window (the reference) and those of the month (the current data). Plain frames: a task
    on any worker makes them, another puts a version's together."""

    version: str
    series: Series
    reference: pd.DataFrame
    current: pd.DataFrame


def run_monthly(
    engine: Engine,
    month: str,
    store: ModelStore,
    *,
    report_dir: Path,
    as_of: datetime,
    thresholds: Thresholds | None = None,
    evaluate: EvaluateVersions | None = None,
) -> MonthlyResult:
    """Evaluate every version that matters for `month` and store what was found: a row in
    `model_evaluations`, the report under `report_dir`, and a run in the model store linked
    from the version. `evaluate` spreads the versions over workers (default: each here)."""
    thresholds = thresholds or Thresholds()
    start, end = evaluation_window(month, as_of)
    result = MonthlyResult(month)
    rows = versions_to_evaluate(engine, start.to_pydatetime())
    if evaluate is None:
        evaluate = partial(evaluate_each, engine, store, month, as_of, thresholds)
    for evaluated in evaluate([row.version for row in rows]):
        if evaluated.evaluation is None or evaluated.html is None:
            # No data for it: say so, go on with the others.
            result.errors[evaluated.version] = evaluated.error or "not evaluated"
            continue
        path = report_dir / month / f"{evaluated.version}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(evaluated.html, encoding="utf-8")
        result.evaluations.append(evaluated.evaluation)
        result.reports[evaluated.version] = path
    for production in result.production():
        others = [
            e
            for e in result.evaluations
            if e.model_type == production.model_type and e is not production
        ]
        production.recommendation, production.rollback_to = recommend(production, others)
    for evaluation in result.evaluations:
        row = next(r for r in rows if r.version == evaluation.version)
        run_id = store.log_evaluation(row, evaluation.summary(), result.reports[row.version])
        _store(engine, evaluation, result.reports[evaluation.version], run_id, as_of)
    return result


def evaluation_window(month: str, as_of: datetime) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The part of `month` that has happened by `as_of`."""
    start, end = month_bounds(month)
    if start >= pd.Timestamp(as_of):
        raise InvalidInputError(f"month {month} has not begun as of {as_of.isoformat()}")
    return start, min(end, pd.Timestamp(as_of))


def evaluate_each(
    engine: Engine,
    store: ModelStore,
    month: str,
    as_of: datetime,
    thresholds: Thresholds,
    versions: Sequence[str],
) -> list[Evaluated]:
    """Each named version evaluated for `month`, one after another, series by series (as the
    flow's tasks do it, one per version × series); the month's candles are read once."""
    start, end = evaluation_window(month, as_of)
    candles = candle_reader(engine)
    rows = _rows(engine, versions)
    out = []
    for version in versions:
        try:
            loaded = store.load(rows[version])
            scores = [
                score_series(loaded, rows[version], series, candles, start, end)
                for series in version_series(loaded.card)
            ]
            evaluation, html = evaluate_scored(
                engine, rows[version], scores, month, as_of, thresholds
            )
        except InvalidInputError as exc:
            out.append(Evaluated(version, error=str(exc)))
            continue
        out.append(Evaluated(version, evaluation, html))
    return out


def version_row(engine: Engine, version: str) -> ModelVersion:
    """The row of `version` (detached: plain values a task can hold)."""
    with session_factory(engine)() as session:
        row = lookups.version_row(session, version)
        if row is None:
            raise InvalidInputError(f"no model version {version!r}")
        return row


def plan_version(store: ModelStore, row: ModelVersion) -> list[Series]:
    """The series the version is evaluated on; InvalidInputError when it cannot be."""
    card = store.load(row).card
    training_window(row, card)
    return version_series(card)


def version_series(card: ModelCard) -> list[Series]:
    """The series a version is evaluated on: those its card says it was trained on."""
    return [
        (pair, timeframe) for pair in sorted(card.pairs) for timeframe in sorted(card.timeframes)
    ]


def candle_reader(engine: Engine) -> CandleReader:
    """`load_candles` with each (series, window) read once."""
    read: dict[tuple[Any, ...], pd.DataFrame] = {}

    def candles(pairs: list[str], timeframes: list[str], lo: datetime, hi: datetime) -> Any:
        key = (tuple(pairs), tuple(timeframes), lo, hi)
        if key not in read:
            read[key] = load_candles(engine, lo, hi, pairs, timeframes)
        return read[key]

    return candles


def score_series(
    loaded: LoadedModel,
    row: ModelVersion,
    series: Series,
    candles: CandleReader,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> SeriesScores:
    """One series' samples of the version's training window and of the month, scored by its
    model (`scored_samples`); a series with too few candles for a window has none."""
    model, card = loaded.model, loaded.card
    train_start, train_end = training_window(row, card)
    # The same look back for every series of the version: the month's first features are
    # computed from the same candles as when its series are scored together.
    lookback = max(approx_step(tf) for tf in card.timeframes) * (2 * card.window + 72)
    pair, timeframe = series

    def scored(lo: pd.Timestamp, read_from: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
        frame = candles([pair], [timeframe], read_from.to_pydatetime(), hi.to_pydatetime())
        if len(frame) < card.window:
            return pd.DataFrame()
        return scored_samples(model, card, frame, lo, hi)

    return SeriesScores(
        version=row.version,
        series=series,
        reference=scored(train_start, train_start, train_end),
        current=scored(start, start - lookback, end),
    )


def evaluate_scored(
    engine: Engine,
    row: ModelVersion,
    scores: Sequence[SeriesScores],
    month: str,
    as_of: datetime,
    thresholds: Thresholds,
) -> tuple[VersionEvaluation, str]:
    """The version's verdict and report from its series' scores, put together in the order
    one dataset of all its series has them (by series, then stably by time)."""
    start, end = evaluation_window(month, as_of)
    ordered = sorted(scores, key=lambda s: s.series)
    reference = _merged([s.reference for s in ordered])
    current = _merged([s.current for s in ordered])
    if reference is None:
        raise InvalidInputError(f"{row.version}: no candles of its training window to compare with")
    if current is None:
        raise InvalidInputError(f"{row.version}: no candles of {month} on its series")
    return evaluate_version(
        version=row.version,
        model_type=row.model_type,
        status=row.status,
        month=month,
        reference=reference,
        current=current,
        holdout=row.metrics or {},
        thresholds=thresholds,
        live=_live(engine, row.version, start, end),
    )


def _rows(engine: Engine, versions: Sequence[str]) -> dict[str, ModelVersion]:
    with session_factory(engine)() as session:
        found = session.scalars(select(ModelVersion).where(ModelVersion.version.in_(versions)))
        return {r.version: r for r in found}


def training_window(row: ModelVersion, card: ModelCard) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Where the version's training data began, and where its holdout began."""
    metrics = row.metrics or {}
    if "start" not in card.data_time_range or "holdout_start" not in metrics:
        raise InvalidInputError(f"{row.version}: its card says nothing of its training window")
    return pd.Timestamp(card.data_time_range["start"]), pd.Timestamp(metrics["holdout_start"])


def _merged(frames: Sequence[pd.DataFrame]) -> pd.DataFrame | None:
    """Per-series scored samples as one frame, stably by time; None when no series had
    candles enough for a window."""
    parts = [f for f in frames if len(f.columns)]
    if not parts:
        return None
    merged = pd.concat(parts, ignore_index=True)
    return merged.sort_values("time", kind="stable").reset_index(drop=True)


def _live(engine: Engine, version: str, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, Any]:
    """The version's own signals of the month: how many, decided, won."""
    with session_factory(engine)() as session:
        rows = (
            session.execute(
                select(TradingSignal.actual_outcome, func.count())
                .where(
                    TradingSignal.model_version == version,
                    TradingSignal.verified,  # a caller's own candles decide nothing
                    TradingSignal.created_at >= start.to_pydatetime(),
                    TradingSignal.created_at < end.to_pydatetime(),
                )
                .group_by(TradingSignal.actual_outcome)
            )
        ).all()
    counts: dict[str, int] = {str(outcome): int(n) for outcome, n in rows}
    wins, losses = int(counts.get("win", 0)), int(counts.get("loss", 0))
    return {
        "signals": int(sum(counts.values())),
        "decided": wins + losses,
        "wins": wins,
        "win_rate": wins / (wins + losses) if wins + losses else None,
    }


def _store(
    engine: Engine, e: VersionEvaluation, report: Path, run_id: str | None, as_of: datetime
) -> None:
    summary = {**e.summary(), "report_path": str(report), "mlflow_run_id": run_id}
    with transaction(engine) as session:
        session.execute(
            delete(ModelEvaluation).where(
                ModelEvaluation.version == e.version, ModelEvaluation.month == e.month
            )
        )
        session.add(
            ModelEvaluation(
                id=uuid.uuid4(),
                version=e.version,
                model_type=e.model_type,
                month=e.month,
                status=e.status,
                samples=e.samples,
                accuracy=e.accuracy,
                auc=e.auc,
                log_loss=e.log_loss,
                holdout_accuracy=e.holdout_accuracy,
                holdout_auc=e.holdout_auc,
                drift_share=e.drift_share,
                degraded=e.degraded,
                drift=e.drift,
                recommendation=e.recommendation,
                report_path=str(report),
                mlflow_run_id=run_id,
                details=summary,
                evaluated_at=as_of,
            )
        )
        row = session.execute(
            select(ModelVersion.production_metrics).where(ModelVersion.version == e.version)
        ).scalar_one()
        history = [h for h in (row or {}).get("evaluations", []) if h.get("month") != e.month]
        history = sorted([*history, summary], key=lambda h: str(h.get("month")))[-24:]
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.version == e.version)
            .values(production_metrics={"latest": history[-1], "evaluations": history})
        )
