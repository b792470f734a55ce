"""What the monitoring endpoints read: training history, model performance, Prometheus metrics.

Queries aggregate in the database (one GROUP BY per question) and return records; rendering
the Prometheus text is a pure function of a `MetricsSnapshot`, so its format is tested alone.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, RowMapping, func, literal_column, select

from aifx_ml.db.engine import session_factory
from aifx_ml.db.models import (
    TRAINING_STATUSES,
    TRAINING_TYPES,
    VERSION_STATUSES,
    ModelABTest,
    ModelTrainingLog,
    ModelVersion,
    TradingSignal,
)
from aifx_ml.domain import TestStatus, TrainingStatus
from aifx_ml.errors import InvalidInputError
from aifx_ml.events.relay import OutboxStatus

Period = Literal["day", "month"]
DECIDED = ("win", "loss", "breakeven")


# --- training history ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRun:
    """One row of `model_training_log`, with the version it registered (if any)."""

    id: uuid.UUID
    training_type: str
    model_type: str
    status: str
    started_at: datetime
    completed_at: datetime | None
    training_duration: float | None
    dataset_size: int | None
    data_time_range: dict[str, Any] | None
    metrics: dict[str, Any] | None
    error_message: str | None
    mlflow_run_id: str | None
    model_version: str | None


def training_history(
    engine: Engine,
    training_type: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[TrainingRun]:
    """Runs started in [since, until), newest first, optionally of one type and status.

    Naive datetimes are taken as UTC.
    """
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise InvalidInputError(f"since ({since.isoformat()}) must be before until")
    log = ModelTrainingLog
    query = (
        select(log, ModelVersion.version)
        .outerjoin(ModelVersion, ModelVersion.training_log_id == log.id)
        .order_by(log.started_at.desc(), log.id)
        .limit(limit)
    )
    for column, value in ((log.training_type, training_type), (log.status, status)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(log.started_at >= since)
    if until is not None:
        query = query.where(log.started_at < until)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [_run(row._mapping) for row in rows]


def _run(row: RowMapping) -> TrainingRun:
    return TrainingRun(
        id=row["id"],
        training_type=row["training_type"],
        model_type=row["model_type"],
        status=row["status"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        training_duration=row["training_duration"],
        dataset_size=row["dataset_size"],
        data_time_range=row["data_time_range"],
        metrics=row["metrics"],
        error_message=row["error_message"],
        mlflow_run_id=row["mlflow_run_id"],
        model_version=row["version"],
    )


# --- model performance ---------------------------------------------------------------------


@dataclass(frozen=True)
class OfflineMetrics:
    """The holdout scores recorded when the version was trained (None where not recorded)."""

    holdout_accuracy: float | None = None
    holdout_auc: float | None = None
    holdout_log_loss: float | None = None
    holdout_brier: float | None = None
    holdout_samples: float | None = None
    lift_over_baseline: float | None = None
    lift_over_production: float | None = None


@dataclass(frozen=True)
class LiveOutcomes:
    """Signals of one version (in one period): the win rate is over decided signals (win or
    loss), as the A/B statistics count it; breakevens and pending signals are not decided."""

    signals: int = 0
    pending: int = 0
    wins: int = 0
    losses: int = 0
    breakevens: int = 0
    win_rate: float | None = None
    mean_pnl_percent: float | None = None


@dataclass(frozen=True)
class PeriodOutcomes:
    period: str  # UTC day (2026-11-24) or month (2026-11) of the signals' creation
    live: LiveOutcomes


@dataclass(frozen=True)
class DriftPoint:
    month: str | None
    drift_share: float | None


@dataclass(frozen=True)
class VersionPerformance:
    version: str
    model_type: str | None
    status: str | None
    created_at: datetime | None
    promoted_at: datetime | None
    offline: OfflineMetrics
    live: LiveOutcomes
    series: tuple[PeriodOutcomes, ...] = ()
    drift: tuple[DriftPoint, ...] = ()
    latest_drift_share: float | None = None


@dataclass
class _Tally:
    """Counts accumulated over GROUP BY rows."""

    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    pnl_sum: float = 0.0
    pnl_count: int = 0

    def add(self, outcome: str, count: int, pnl_sum: float | None, pnl_count: int) -> None:
        self.outcomes[outcome] += count
        self.pnl_sum += pnl_sum or 0.0
        self.pnl_count += pnl_count

    def live(self) -> LiveOutcomes:
        wins, losses = self.outcomes["win"], self.outcomes["loss"]
        return LiveOutcomes(
            signals=sum(self.outcomes.values()),
            pending=self.outcomes["pending"],
            wins=wins,
            losses=losses,
            breakevens=self.outcomes["breakeven"],
            win_rate=wins / (wins + losses) if wins + losses else None,
            mean_pnl_percent=self.pnl_sum / self.pnl_count if self.pnl_count else None,
        )


def model_performance(
    engine: Engine,
    period: Period = "day",
    version: str | None = None,
    since: datetime | None = None,
) -> list[VersionPerformance]:
    """Per model version, newest first: offline holdout metrics, live outcomes in total and
    per UTC day or month (signals created since `since`), and drift from the monthly
    evaluations in `production_metrics` where there are any.

    Versions that emitted signals without a `model_versions` row are included too.
    """
    since = _utc(since)
    bucket = _bucket(TradingSignal.created_at, period, engine.dialect.name)
    with session_factory(engine)() as session:
        query = select(
            TradingSignal.model_version,
            bucket.label("period"),
            TradingSignal.actual_outcome,
            func.count(),
            func.sum(TradingSignal.actual_pnl_percent),
            func.count(TradingSignal.actual_pnl_percent),
        ).where(
            TradingSignal.model_version.is_not(None),
            TradingSignal.verified,  # computed on a caller's own candles: not the model's record
        )
        versions = select(ModelVersion).order_by(ModelVersion.created_at.desc())
        if version is not None:
            query = query.where(TradingSignal.model_version == version)
            versions = versions.where(ModelVersion.version == version)
        if since is not None:
            query = query.where(TradingSignal.created_at >= since)
        grouped = session.execute(
            query.group_by(TradingSignal.model_version, bucket, TradingSignal.actual_outcome)
        ).all()
        rows = session.scalars(versions).all()
    totals: dict[str, _Tally] = defaultdict(_Tally)
    periods: dict[str, dict[str, _Tally]] = defaultdict(lambda: defaultdict(_Tally))
    for name, when, outcome, count, pnl_sum, pnl_count in grouped:
        totals[name].add(outcome, count, pnl_sum, pnl_count)
        periods[name][str(when)].add(outcome, count, pnl_sum, pnl_count)
    known = {row.version for row in rows}
    out = [_performance(row, totals[row.version], periods[row.version]) for row in rows]
    out += [
        _performance(None, totals[name], periods[name], name)
        for name in sorted(set(totals) - known)
    ]
    return out


def _performance(
    row: ModelVersion | None,
    total: _Tally,
    by_period: Mapping[str, _Tally],
    name: str | None = None,
) -> VersionPerformance:
    drift = drift_history(row.production_metrics if row else None)
    shares = [p.drift_share for p in drift if p.drift_share is not None]
    return VersionPerformance(
        version=row.version if row else str(name),
        model_type=row.model_type if row else None,
        status=row.status if row else None,
        created_at=row.created_at if row else None,
        promoted_at=row.promoted_at if row else None,
        offline=offline_metrics(row.metrics if row else None),
        live=total.live(),
        series=tuple(PeriodOutcomes(p, by_period[p].live()) for p in sorted(by_period)),
        drift=drift,
        latest_drift_share=shares[-1] if shares else None,
    )


def _bucket(column: Any, period: Period, dialect: str) -> ColumnElement[str]:
    """The UTC day or month of a timestamp as text, in the database's own dialect.

    The patterns are SQL literals, not bound parameters: PostgreSQL matches a GROUP BY
    expression to the selected one by its text, and two `$n` placeholders never match.
    """
    if dialect == "postgresql":
        pattern = {"day": "'YYYY-MM-DD'", "month": "'YYYY-MM'"}[period]
        utc = func.timezone(literal_column("'UTC'"), column)
        return func.to_char(utc, literal_column(pattern))
    # SQLite keeps UTC timestamps as naive text (see db.types.UTCDateTime).
    return func.strftime(literal_column({"day": "'%Y-%m-%d'", "month": "'%Y-%m'"}[period]), column)


def offline_metrics(metrics: Mapping[str, Any] | None) -> OfflineMetrics:
    """The holdout scores out of `model_versions.metrics`; anything missing or not a finite
    number is None."""
    found = metrics if isinstance(metrics, Mapping) else {}
    return OfflineMetrics(
        **{name: _number(found.get(name)) for name in OfflineMetrics.__dataclass_fields__}
    )


def drift_history(production_metrics: Any) -> tuple[DriftPoint, ...]:
    """Drift shares of the monthly evaluations, oldest first, read defensively from
    `{"evaluations": [{"month", "drift_share"}, ...]}` and/or `{"latest": {...}}`."""
    if not isinstance(production_metrics, Mapping):
        return ()
    entries = production_metrics.get("evaluations")
    items = [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []
    singles = [production_metrics.get("latest")]
    if "drift_share" in production_metrics:  # a flat summary: {"drift_share", "month"}
        singles.append(production_metrics)
    for single in singles:
        # A summary that repeats an evaluation (or its month) is not a new point.
        if isinstance(single, Mapping) and single not in items:
            month = single.get("month")
            if month is None or all(e.get("month") != month for e in items):
                items.append(single)
    points = [
        DriftPoint(
            None if e.get("month") is None else str(e.get("month")), _number(e.get("drift_share"))
        )
        for e in items
    ]
    # Undated evaluations keep their place after the dated ones.
    return tuple(sorted(points, key=lambda p: (p.month is None, p.month or "")))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- Prometheus ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything `/metrics` exposes, read at one moment."""

    training_runs: Mapping[tuple[str, str], int]  # (training_type, status) -> runs
    last_success: Mapping[str, datetime]  # training_type -> newest completed run
    predictions: Mapping[str, int]  # model_version -> signals
    labeled: Mapping[tuple[str, str], int]  # (model_version, outcome) -> signals
    outbox_pending: int
    outbox_oldest_age_seconds: float
    ab_tests_active: int
    model_versions: Mapping[str, int]  # status -> versions


@dataclass(frozen=True)
class Family:
    """One metric: its samples are (labels, value)."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]]


def prometheus_metrics(engine: Engine, now: datetime, outbox: OutboxStatus) -> str:
    """The Prometheus text exposition (format 0.0.4) of the tables and the outbox."""
    return render_prometheus(families(metrics_snapshot(engine, now, outbox)))


def metrics_snapshot(engine: Engine, now: datetime, outbox: OutboxStatus) -> MetricsSnapshot:
    log, sig = ModelTrainingLog, TradingSignal
    with engine.connect() as conn:
        runs = conn.execute(
            select(log.training_type, log.status, func.count()).group_by(
                log.training_type, log.status
            )
        ).all()
        success = conn.execute(
            select(log.training_type, func.max(log.completed_at))
            .where(log.status == TrainingStatus.COMPLETED)
            .group_by(log.training_type)
        ).all()
        signals = conn.execute(
            select(sig.model_version, sig.actual_outcome, func.count()).group_by(
                sig.model_version, sig.actual_outcome
            )
        ).all()
        active = conn.scalar(
            select(func.count())
            .select_from(ModelABTest)
            .where(ModelABTest.status == TestStatus.ACTIVE)
        )
        stages = conn.execute(
            select(ModelVersion.status, func.count()).group_by(ModelVersion.status)
        ).all()
    predictions: dict[str, int] = defaultdict(int)
    labeled: dict[tuple[str, str], int] = {}
    for found, outcome, count in signals:
        name = found or "unknown"  # a signal recorded without a version
        predictions[name] += count
        for decided in DECIDED:
            labeled.setdefault((name, decided), 0)
        if outcome in DECIDED:
            labeled[(name, outcome)] += count
    oldest = outbox.oldest_created_at
    return MetricsSnapshot(
        training_runs={(t, s): n for t, s, n in runs},
        last_success={t: at for t, at in success if at is not None},
        predictions=dict(predictions),
        labeled=labeled,
        outbox_pending=outbox.pending,
        outbox_oldest_age_seconds=0.0
        if oldest is None
        else max(0.0, (now - oldest).total_seconds()),
        ab_tests_active=int(active or 0),
        model_versions={s: n for s, n in stages},
    )


def families(snap: MetricsSnapshot) -> list[Family]:
    """The metric families, with every known training type, status and stage present (zero
    when there is none), so a dashboard's series do not appear out of nowhere."""
    return [
        Family(
            "aifx_training_runs_total",
            "counter",
            "Training runs recorded in model_training_log, by type and status.",
            [
                ({"training_type": t, "status": s}, snap.training_runs.get((t, s), 0))
                for t in TRAINING_TYPES
                for s in TRAINING_STATUSES
            ],
        ),
        Family(
            "aifx_training_last_success_timestamp_seconds",
            "gauge",
            "Unix time the newest completed training run of each type finished.",
            [({"training_type": t}, at.timestamp()) for t, at in sorted(snap.last_success.items())],
        ),
        Family(
            "aifx_predictions_total",
            "counter",
            "Signals recorded in trading_signals, by model version.",
            [({"model_version": v}, n) for v, n in sorted(snap.predictions.items())],
        ),
        Family(
            "aifx_signals_labeled_total",
            "counter",
            "Signals labeled with an outcome (win, loss, breakeven), by model version.",
            [({"model_version": v, "outcome": o}, n) for (v, o), n in sorted(snap.labeled.items())],
        ),
        Family(
            "aifx_outbox_pending",
            "gauge",
            "Events waiting in event_outbox to be relayed to Redis.",
            [({}, snap.outbox_pending)],
        ),
        Family(
            "aifx_outbox_oldest_age_seconds",
            "gauge",
            "Age of the oldest event waiting in the outbox (0 when none waits).",
            [({}, snap.outbox_oldest_age_seconds)],
        ),
        Family(
            "aifx_ab_tests_active",
            "gauge",
            "A/B tests currently active.",
            [({}, snap.ab_tests_active)],
        ),
        Family(
            "aifx_model_versions",
            "gauge",
            "Model versions by lifecycle status.",
            [({"status": s}, snap.model_versions.get(s, 0)) for s in VERSION_STATUSES],
        ),
    ]


def render_prometheus(metric_families: Iterable[Family]) -> str:
    """Prometheus text format 0.0.4: `# HELP` and `# TYPE` lines, then `name{labels} value`."""
    lines: list[str] = []
    for family in metric_families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            lines.append(f"{family.name}{_labels(labels)} {_value(value)}")
    return "\n".join(lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
