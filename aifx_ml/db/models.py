"""SQLAlchemy models of the tables users rely on (names and columns from DESIGN.md).

Enumerations are strings with named CHECK constraints rather than native enums, so the same
migration runs and rolls back on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aifx_ml.db.types import JSONType, UTCDateTime
from aifx_ml.domain import (
    OUTCOMES,
    SIGNALS,
    ModelStatus,
    TestMode,
    TestStatus,
    TrainingStatus,
    TrainingType,
)
from aifx_ml.markets import TIMEFRAMES

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TRAINING_TYPES: tuple[str, ...] = tuple(t.value for t in TrainingType)
TRAINING_STATUSES: tuple[str, ...] = tuple(s.value for s in TrainingStatus)
VERSION_STATUSES: tuple[str, ...] = tuple(s.value for s in ModelStatus)
AB_STATUSES: tuple[str, ...] = tuple(s.value for s in TestStatus)
AB_MODES: tuple[str, ...] = tuple(m.value for m in TestMode)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


# Portable stand-in for ^[A-Z]{3}/[A-Z]{3}$ (SQLite has no regex operator).
PAIR_CHECK = "length(pair) = 7 AND substr(pair, 4, 1) = '/' AND upper(pair) = pair"


def utcnow() -> datetime:
    """Default for created/updated columns; domain code passes its own clock instead."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class MarketData(Base):
    """One OHLCV candle (open time in UTC) with its indicators."""

    __tablename__ = "market_data"
    __table_args__ = (
        UniqueConstraint("pair", "timeframe", "timestamp", name="uq_market_data_series_ts"),
        CheckConstraint(PAIR_CHECK, name="pair_format"),
        CheckConstraint(_in("timeframe", TIMEFRAMES), name="timeframe_valid"),
        CheckConstraint("open > 0 AND high > 0 AND low > 0 AND close > 0", name="prices_positive"),
        CheckConstraint("high >= low", name="high_ge_low"),
        CheckConstraint("volume >= 0", name="volume_nonneg"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    pair: Mapped[str] = mapped_column(String(7))
    timeframe: Mapped[str] = mapped_column(String(5))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    open: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    close: Mapped[float] = mapped_column(Double)
    volume: Mapped[float] = mapped_column(Double, default=0.0)
    technical_indicators: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    source: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TradingSignal(Base):
    """A signal a model (or baseline) emitted, and what the market made of it."""

    __tablename__ = "trading_signals"
    __table_args__ = (
        CheckConstraint(PAIR_CHECK, name="pair_format"),
        CheckConstraint(_in("timeframe", TIMEFRAMES), name="timeframe_valid"),
        CheckConstraint(_in("signal", SIGNALS), name="signal_valid"),
        CheckConstraint(_in("actual_outcome", OUTCOMES), name="outcome_valid"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        CheckConstraint("entry_price > 0", name="entry_positive"),
        Index("ix_trading_signals_pending", "actual_outcome", "pair", "timeframe", "created_at"),
        Index("ix_trading_signals_model_version", "model_version", "created_at"),
        Index("ix_trading_signals_ab_test_id", "ab_test_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    pair: Mapped[str] = mapped_column(String(7))
    timeframe: Mapped[str] = mapped_column(String(5))
    signal: Mapped[str] = mapped_column(String(4))
    confidence: Mapped[float] = mapped_column(Double)
    probability: Mapped[float | None] = mapped_column(Double, nullable=True)
    entry_price: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actual_outcome: Mapped[str] = mapped_column(String(9), default="pending")
    actual_pnl_percent: Mapped[float | None] = mapped_column(Double, nullable=True)
    labeled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ab_test_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("model_ab_test.id", ondelete="SET NULL"), nullable=True
    )
    routing_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # False: computed on candles a caller sent, so it decides nothing (A/B, live performance).
    verified: Mapped[bool] = mapped_column(Boolean, server_default=true(), default=True)


class ShadowSignal(Base):
    """A challenger's answer to a request Production answered during a shadow test (0010).

    Never returned to the caller and never counted as served: it mirrors the served signal
    `served_signal_id` (same pair, moment and entry price) and is labeled by the same rules,
    so the two versions can be compared request by request.
    """

    __tablename__ = "shadow_signals"
    __table_args__ = (
        CheckConstraint(PAIR_CHECK, name="pair_format"),
        CheckConstraint(_in("timeframe", TIMEFRAMES), name="timeframe_valid"),
        CheckConstraint(_in("signal", SIGNALS), name="signal_valid"),
        CheckConstraint(_in("actual_outcome", OUTCOMES), name="outcome_valid"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        CheckConstraint("entry_price > 0", name="entry_positive"),
        Index("ix_shadow_signals_pending", "actual_outcome", "pair", "timeframe", "created_at"),
        Index("ix_shadow_signals_ab_test_id", "ab_test_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    served_signal_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("trading_signals.id", ondelete="CASCADE"), unique=True
    )
    ab_test_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("model_ab_test.id", ondelete="CASCADE")
    )
    model_version: Mapped[str] = mapped_column(String(64))
    pair: Mapped[str] = mapped_column(String(7))
    timeframe: Mapped[str] = mapped_column(String(5))
    signal: Mapped[str] = mapped_column(String(4))
    confidence: Mapped[float] = mapped_column(Double)
    probability: Mapped[float | None] = mapped_column(Double, nullable=True)
    entry_price: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actual_outcome: Mapped[str] = mapped_column(String(9), default="pending")
    actual_pnl_percent: Mapped[float | None] = mapped_column(Double, nullable=True)
    labeled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ModelTrainingLog(Base):
    """One training attempt, whatever became of it."""

    __tablename__ = "model_training_log"
    __table_args__ = (
        CheckConstraint(_in("training_type", TRAINING_TYPES), name="training_type_valid"),
        CheckConstraint(_in("status", TRAINING_STATUSES), name="status_valid"),
        Index("ix_model_training_log_type_status", "training_type", "status", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    training_type: Mapped[str] = mapped_column(String(11))
    model_type: Mapped[str] = mapped_column(String(64))
    dataset_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data_time_range: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    status: Mapped[str] = mapped_column(String(9), default="running")
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    training_duration: Mapped[float | None] = mapped_column(Double, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ModelVersion(Base):
    """A registered model version and its lifecycle stage."""

    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(_in("status", VERSION_STATUSES), name="status_valid"),
        # At most one production version per model type, enforced by the database itself.
        Index(
            "uq_model_versions_one_production",
            "model_type",
            unique=True,
            postgresql_where=text("status = 'production'"),
            sqlite_where=text("status = 'production'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    model_type: Mapped[str] = mapped_column(String(64))
    model_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    training_log_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("model_training_log.id", ondelete="SET NULL"), nullable=True
    )
    parent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="training")
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    production_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ModelStageHistory(Base):
    """One stage change of a model version: when, from what to what, why and by whom."""

    __tablename__ = "model_stage_history"
    __table_args__ = (
        CheckConstraint(
            f"from_status IS NULL OR {_in('from_status', VERSION_STATUSES)}",
            name="from_status_valid",
        ),
        CheckConstraint(_in("to_status", VERSION_STATUSES), name="to_status_valid"),
        Index("ix_model_stage_history_type_time", "model_type", "changed_at"),
        Index("ix_model_stage_history_version", "version"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    version: Mapped[str] = mapped_column(
        String(64), ForeignKey("model_versions.version", ondelete="CASCADE")
    )
    model_type: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(10), nullable=True)
    to_status: Mapped[str] = mapped_column(String(10))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when it committed (commit_stamp)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))  # the command or flow that made the change
    ab_test_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelABTest(Base):
    """A live comparison of two model versions."""

    __tablename__ = "model_ab_test"
    __table_args__ = (
        CheckConstraint(_in("status", AB_STATUSES), name="status_valid"),
        Index("ix_model_ab_test_type_status", "model_type", "status"),
        # At most one active test per model type, enforced by the database itself (0008).
        Index(
            "uq_model_ab_test_one_active",
            "model_type",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        # A split test sends a share of requests to B; a shadow test sends none (B only
        # answers unseen), so its split is 0 (0010).
        CheckConstraint(
            "(mode = 'split' AND traffic_split > 0 AND traffic_split < 1) "
            "OR (mode = 'shadow' AND traffic_split = 0)",
            name="traffic_split_range",
        ),
        CheckConstraint("model_a_version <> model_b_version", name="distinct_versions"),
        CheckConstraint(_in("mode", AB_MODES), name="mode_valid"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    test_name: Mapped[str] = mapped_column(String(128))
    model_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mode: Mapped[str] = mapped_column(String(6), server_default="split", default="split")
    model_a_version: Mapped[str] = mapped_column(String(64), ForeignKey("model_versions.version"))
    model_b_version: Mapped[str] = mapped_column(String(64), ForeignKey("model_versions.version"))
    traffic_split: Mapped[float] = mapped_column(Double)
    status: Mapped[str] = mapped_column(String(9), default="active")
    winner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The plan fixed at the start (alpha, minimum sample, maximum duration, guardrail).
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    ended_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DataQuarantine(Base):
    """An input row that was refused, kept with the reason so nothing is silently dropped."""

    __tablename__ = "data_quarantine"
    __table_args__ = (
        # The same bad row of the same file is recorded once, however often it is imported.
        UniqueConstraint("row_hash", name="uq_data_quarantine_row_hash"),
        Index("ix_data_quarantine_series", "pair", "timeframe", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    source: Mapped[str] = mapped_column(String(255))
    pair: Mapped[str | None] = mapped_column(String(16), nullable=True)
    timeframe: Mapped[str | None] = mapped_column(String(8), nullable=True)
    row_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType)
    reason: Mapped[str] = mapped_column(Text)
    row_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelEvaluation(Base):
    """One version over one evaluated month: quality, drift, the verdict, the report."""

    __tablename__ = "model_evaluations"
    __table_args__ = (
        UniqueConstraint("version", "month", name="uq_model_evaluations_version_month"),
        CheckConstraint(
            "recommendation IS NULL OR recommendation IN ('keep', 'retrain', 'rollback')",
            name="recommendation_valid",
        ),
        Index("ix_model_evaluations_type_month", "model_type", "month"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    version: Mapped[str] = mapped_column(
        String(64), ForeignKey("model_versions.version", ondelete="CASCADE")
    )
    model_type: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    status: Mapped[str] = mapped_column(String(10))  # the version's stage when evaluated
    samples: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    auc: Mapped[float | None] = mapped_column(Double, nullable=True)
    log_loss: Mapped[float | None] = mapped_column(Double, nullable=True)
    holdout_accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    holdout_auc: Mapped[float | None] = mapped_column(Double, nullable=True)
    drift_share: Mapped[float] = mapped_column(Double)
    degraded: Mapped[bool] = mapped_column(Boolean)
    drift: Mapped[bool] = mapped_column(Boolean)
    recommendation: Mapped[str | None] = mapped_column(String(16), nullable=True)
    report_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# PostgreSQL numbers outbox rows from this sequence; SQLite has none, so `enqueue_many` takes
# max(seq) + 1 inside the writer's transaction (SQLite lets one writer in at a time).
EVENT_SEQUENCE = Sequence("event_outbox_seq")


class EventOutbox(Base):
    """Events written in the same transaction as the change they announce, relayed later.

    `seq` is the order they were written in: ids are random and `created_at` is the caller's
    clock (simulated in a replay, shared by every event of one change), so neither orders them.
    """

    __tablename__ = "event_outbox"
    __table_args__ = (
        UniqueConstraint("seq", name="uq_event_outbox_seq"),
        Index("ix_event_outbox_pending", "published_at", "seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, EVENT_SEQUENCE)
    channel: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


ALERT_SEVERITIES = ("info", "warning", "critical")
ALERT_STATUSES = ("sent", "suppressed", "failed", "pending")


class Alert(Base):
    """An alert raised for people, and what became of it: sent, suppressed as a repeat of the
    same key within its cooldown, failed (retried at `next_attempt_at`), or pending."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(_in("severity", ALERT_SEVERITIES), name="severity_valid"),
        CheckConstraint(_in("status", ALERT_STATUSES), name="status_valid"),
        CheckConstraint("attempts >= 0", name="attempts_nonneg"),
        Index("ix_alerts_key_created", "alert_key", "created_at"),
        Index("ix_alerts_due", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    alert_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the caller's clock (as_of)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Failed or pending: when to try again; None once sent, suppressed or given up.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


REPLAY_STATUSES = ("running", "interrupted", "completed", "failed")
REPLAY_JOB_STATUSES = ("running", "completed", "failed")


class ReplayRun(Base):
    """A replay of the loop over history: its parameters and how far it got (`cursor`, the last
    simulated moment fully processed), so the same command resumes it."""

    __tablename__ = "replay_runs"
    __table_args__ = (
        UniqueConstraint("name", name="uq_replay_runs_name"),
        CheckConstraint(_in("status", REPLAY_STATUSES), name="status_valid"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(12))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    cursor: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    moments_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # Wall-clock bookkeeping of the process, unlike the simulated `cursor`.
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ReplayJob(Base):
    """One scheduled flow a replay ran at a simulated moment, and how it ended."""

    __tablename__ = "replay_jobs"
    __table_args__ = (
        UniqueConstraint(
            "replay_id", "job", "scheduled_at", name="uq_replay_jobs_replay_job_moment"
        ),
        CheckConstraint(_in("status", REPLAY_JOB_STATUSES), name="status_valid"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    replay_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("replay_runs.id", ondelete="CASCADE")
    )
    job: Mapped[str] = mapped_column(String(64))
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(12))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class StoreIdentity(Base):
    """Which external store these tables belong to (0011): one row per store kind, written on
    first use. The same identity is kept in the store itself (for MLflow, a tag of the
    `aifx-identity` experiment), so a setting that points the tables at another store is
    seen before anything is changed there."""

    __tablename__ = "store_identity"

    store: Mapped[str] = mapped_column(String(16), primary_key=True)  # "mlflow"
    identity: Mapped[str] = mapped_column(String(36))
    uri: Mapped[str] = mapped_column(Text)  # where it was when first recorded
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
