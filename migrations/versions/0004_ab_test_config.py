"""A/B test configuration and outcome

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

What a test was set up to do (alpha, minimum sample, maximum duration, guardrail) is fixed
when it starts — a pre-registered plan — and kept with it; so is the reason it ended.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_ab_test") as batch:
        batch.add_column(sa.Column("config", JSON_TYPE, nullable=True))
        batch.add_column(sa.Column("ended_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_model_ab_test_type_status", "model_ab_test", ["model_type", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_model_ab_test_type_status", table_name="model_ab_test")
    with op.batch_alter_table("model_ab_test") as batch:
        batch.drop_column("evaluated_at")
        batch.drop_column("ended_reason")
        batch.drop_column("config")
