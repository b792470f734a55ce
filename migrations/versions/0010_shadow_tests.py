"""shadow tests: model_ab_test.mode, and the challenger's unseen answers in shadow_signals

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A test is now `split` (a share of requests answered by the challenger, as every test before
this revision was) or `shadow`: Production answers every request and the challenger answers
the same requests unseen, each answer kept in `shadow_signals` next to the served signal it
mirrors. A shadow test routes no traffic to the challenger, so its `traffic_split` is 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPLIT_RANGE = "traffic_split > 0 AND traffic_split < 1"
SPLIT_BY_MODE = (
    "(mode = 'split' AND traffic_split > 0 AND traffic_split < 1) "
    "OR (mode = 'shadow' AND traffic_split = 0)"
)


def upgrade() -> None:
    with op.batch_alter_table("model_ab_test") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(length=6), server_default="split", nullable=False)
        )
        batch.create_check_constraint(
            op.f("ck_model_ab_test_mode_valid"), "mode IN ('split', 'shadow')"
        )
        batch.drop_constraint(op.f("ck_model_ab_test_traffic_split_range"), type_="check")
        batch.create_check_constraint(op.f("ck_model_ab_test_traffic_split_range"), SPLIT_BY_MODE)
    op.create_table(
        "shadow_signals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("served_signal_id", sa.Uuid(), nullable=False),
        sa.Column("ab_test_id", sa.Uuid(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
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
        sa.CheckConstraint(
            "actual_outcome IN ('pending', 'win', 'loss', 'breakeven')",
            name=op.f("ck_shadow_signals_outcome_valid"),
        ),
        sa.CheckConstraint(
            "length(pair) = 7 AND substr(pair, 4, 1) = '/' AND upper(pair) = pair",
            name=op.f("ck_shadow_signals_pair_format"),
        ),
        sa.CheckConstraint(
            "signal IN ('buy', 'sell', 'hold')", name=op.f("ck_shadow_signals_signal_valid")
        ),
        sa.CheckConstraint(
            "timeframe IN ('1min', '5min', '15min', '30min', '1h', '4h', '1d', '1w', '1M')",
            name=op.f("ck_shadow_signals_timeframe_valid"),
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_shadow_signals_confidence_range")
        ),
        sa.CheckConstraint("entry_price > 0", name=op.f("ck_shadow_signals_entry_positive")),
        sa.ForeignKeyConstraint(
            ["served_signal_id"],
            ["trading_signals.id"],
            name=op.f("fk_shadow_signals_served_signal_id_trading_signals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ab_test_id"],
            ["model_ab_test.id"],
            name=op.f("fk_shadow_signals_ab_test_id_model_ab_test"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_signals")),
        sa.UniqueConstraint("served_signal_id", name=op.f("uq_shadow_signals_served_signal_id")),
    )
    op.create_index("ix_shadow_signals_ab_test_id", "shadow_signals", ["ab_test_id"])
    op.create_index(
        "ix_shadow_signals_pending",
        "shadow_signals",
        ["actual_outcome", "pair", "timeframe", "created_at"],
    )


def downgrade() -> None:
    """Refused while a shadow test exists: its mode cannot be expressed before this revision."""
    shadow = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM model_ab_test WHERE mode = 'shadow'"))
        .scalar_one()
    )
    if shadow:
        raise RuntimeError(
            f"cannot downgrade below 0010: {shadow} shadow test(s) exist, and a test before "
            "0010 can only be a split test; delete them first if they must go"
        )
    op.drop_index("ix_shadow_signals_pending", table_name="shadow_signals")
    op.drop_index("ix_shadow_signals_ab_test_id", table_name="shadow_signals")
    op.drop_table("shadow_signals")
    with op.batch_alter_table("model_ab_test") as batch:
        batch.drop_constraint(op.f("ck_model_ab_test_traffic_split_range"), type_="check")
        batch.create_check_constraint(op.f("ck_model_ab_test_traffic_split_range"), SPLIT_RANGE)
        batch.drop_constraint(op.f("ck_model_ab_test_mode_valid"), type_="check")
        batch.drop_column("mode")
