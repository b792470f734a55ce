"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Spelled out here, not imported from the models: a migration must not change when they do.
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_quarantine",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("pair", sa.String(length=16), nullable=True),
        sa.Column("timeframe", sa.String(length=8), nullable=True),
        sa.Column("row_number", sa.Integer(), nullable=True),
        sa.Column("raw", JSON_TYPE, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_quarantine")),
        sa.UniqueConstraint("row_hash", name="uq_data_quarantine_row_hash"),
    )
    op.create_index(
        "ix_data_quarantine_series",
        "data_quarantine",
        ["pair", "timeframe", "created_at"],
        unique=False,
    )

    op.create_table(
        "event_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("payload", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
    )
    op.create_index(
        "ix_event_outbox_unpublished", "event_outbox", ["published_at", "created_at"], unique=False
    )

    op.create_table(
        "market_data",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pair", sa.String(length=7), nullable=False),
        sa.Column("timeframe", sa.String(length=5), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.Column("technical_indicators", JSON_TYPE, nullable=True),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length(pair) = 7 AND substr(pair, 4, 1) = '/' AND upper(pair) = pair",
            name=op.f("ck_market_data_pair_format"),
        ),
        sa.CheckConstraint(
            "timeframe IN ('1min', '5min', '15min', '30min', '1h', '4h', '1d', '1w', '1M')",
            name=op.f("ck_market_data_timeframe_valid"),
        ),
        sa.CheckConstraint("high >= low", name=op.f("ck_market_data_high_ge_low")),
        sa.CheckConstraint(
            "open > 0 AND high > 0 AND low > 0 AND close > 0",
            name=op.f("ck_market_data_prices_positive"),
        ),
        sa.CheckConstraint("volume >= 0", name=op.f("ck_market_data_volume_nonneg")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_data")),
        sa.UniqueConstraint("pair", "timeframe", "timestamp", name="uq_market_data_series_ts"),
    )
    op.create_table(
        "model_training_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("training_type", sa.String(length=11), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=False),
        sa.Column("dataset_size", sa.Integer(), nullable=True),
        sa.Column("data_time_range", JSON_TYPE, nullable=True),
        sa.Column("status", sa.String(length=9), nullable=False),
        sa.Column("metrics", JSON_TYPE, nullable=True),
        sa.Column("training_duration", sa.Double(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed', 'skipped')",
            name=op.f("ck_model_training_log_status_valid"),
        ),
        sa.CheckConstraint(
            "training_type IN ('full', 'incremental')",
            name=op.f("ck_model_training_log_training_type_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_training_log")),
    )
    op.create_index(
        "ix_model_training_log_type_status",
        "model_training_log",
        ["training_type", "status", "started_at"],
        unique=False,
    )

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=False),
        sa.Column("model_path", sa.Text(), nullable=True),
        sa.Column("training_log_id", sa.Uuid(), nullable=True),
        sa.Column("parent_version", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("metrics", JSON_TYPE, nullable=True),
        sa.Column("production_metrics", JSON_TYPE, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('training', 'staging', 'production', 'archived')",
            name=op.f("ck_model_versions_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["training_log_id"],
            ["model_training_log.id"],
            name=op.f("fk_model_versions_training_log_id_model_training_log"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_model_versions_version")),
    )
    op.create_index(
        "uq_model_versions_one_production",
        "model_versions",
        ["model_type"],
        unique=True,
        postgresql_where=sa.text("status = 'production'"),
        sqlite_where=sa.text("status = 'production'"),
    )

    op.create_table(
        "model_ab_test",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("test_name", sa.String(length=128), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=True),
        sa.Column("model_a_version", sa.String(length=64), nullable=False),
        sa.Column("model_b_version", sa.String(length=64), nullable=False),
        sa.Column("traffic_split", sa.Double(), nullable=False),
        sa.Column("status", sa.String(length=9), nullable=False),
        sa.Column("winner", sa.String(length=64), nullable=True),
        sa.Column("metrics", JSON_TYPE, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'completed', 'cancelled')",
            name=op.f("ck_model_ab_test_status_valid"),
        ),
        sa.CheckConstraint(
            "model_a_version <> model_b_version", name=op.f("ck_model_ab_test_distinct_versions")
        ),
        sa.CheckConstraint(
            "traffic_split > 0 AND traffic_split < 1",
            name=op.f("ck_model_ab_test_traffic_split_range"),
        ),
        sa.ForeignKeyConstraint(
            ["model_a_version"],
            ["model_versions.version"],
            name=op.f("fk_model_ab_test_model_a_version_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["model_b_version"],
            ["model_versions.version"],
            name=op.f("fk_model_ab_test_model_b_version_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_ab_test")),
    )
    op.create_table(
        "trading_signals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pair", sa.String(length=7), nullable=False),
        sa.Column("timeframe", sa.String(length=5), nullable=False),
        sa.Column("signal", sa.String(length=4), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("probability", sa.Double(), nullable=True),
        sa.Column("entry_price", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actual_outcome", sa.String(length=9), nullable=False),
        sa.Column("actual_pnl_percent", sa.Double(), nullable=True),
        sa.Column("labeled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("ab_test_id", sa.Uuid(), nullable=True),
        sa.Column("routing_key", sa.String(length=128), nullable=True),
        sa.CheckConstraint(
            "actual_outcome IN ('pending', 'win', 'loss', 'breakeven')",
            name=op.f("ck_trading_signals_outcome_valid"),
        ),
        sa.CheckConstraint(
            "length(pair) = 7 AND substr(pair, 4, 1) = '/' AND upper(pair) = pair",
            name=op.f("ck_trading_signals_pair_format"),
        ),
        sa.CheckConstraint(
            "signal IN ('buy', 'sell', 'hold')", name=op.f("ck_trading_signals_signal_valid")
        ),
        sa.CheckConstraint(
            "timeframe IN ('1min', '5min', '15min', '30min', '1h', '4h', '1d', '1w', '1M')",
            name=op.f("ck_trading_signals_timeframe_valid"),
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_trading_signals_confidence_range")
        ),
        sa.CheckConstraint("entry_price > 0", name=op.f("ck_trading_signals_entry_positive")),
        sa.ForeignKeyConstraint(
            ["ab_test_id"],
            ["model_ab_test.id"],
            name=op.f("fk_trading_signals_ab_test_id_model_ab_test"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trading_signals")),
    )
    op.create_index(
        "ix_trading_signals_ab_test_id", "trading_signals", ["ab_test_id"], unique=False
    )
    op.create_index(
        "ix_trading_signals_model_version",
        "trading_signals",
        ["model_version", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_trading_signals_pending",
        "trading_signals",
        ["actual_outcome", "pair", "timeframe", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_trading_signals_pending", table_name="trading_signals")
    op.drop_index("ix_trading_signals_model_version", table_name="trading_signals")
    op.drop_index("ix_trading_signals_ab_test_id", table_name="trading_signals")

    op.drop_table("trading_signals")
    op.drop_table("model_ab_test")
    op.drop_index("uq_model_versions_one_production", table_name="model_versions")

    op.drop_table("model_versions")
    op.drop_index("ix_model_training_log_type_status", table_name="model_training_log")

    op.drop_table("model_training_log")
    op.drop_table("market_data")
    op.drop_index("ix_event_outbox_unpublished", table_name="event_outbox")

    op.drop_table("event_outbox")
    op.drop_index("ix_data_quarantine_series", table_name="data_quarantine")

    op.drop_table("data_quarantine")
