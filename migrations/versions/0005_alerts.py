"""alerts: every alert raised, whether it was sent, suppressed as a repeat, or failed

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

One row per alert raised. A repeat of the same `alert_key` within its cooldown is kept as
`suppressed` (not sent); a failed delivery keeps its attempts, last error and the time of the
next attempt, so the table is both the history people look at and the retry queue.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("alert_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("details", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')", name=op.f("ck_alerts_severity_valid")
        ),
        sa.CheckConstraint(
            "status IN ('sent', 'suppressed', 'failed', 'pending')",
            name=op.f("ck_alerts_status_valid"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_alerts_attempts_nonneg")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_key_created", "alerts", ["alert_key", "created_at"], unique=False)
    op.create_index("ix_alerts_due", "alerts", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_due", table_name="alerts")
    op.drop_index("ix_alerts_key_created", table_name="alerts")
    op.drop_table("alerts")
