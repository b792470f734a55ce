"""monthly model evaluations

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

One row per model version per evaluated month: the month's quality next to the version's
training-time holdout, the input drift, the verdict and where the Evidently report is — so the
trend of a model can be queried, not only read from HTML files.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_evaluations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=True),
        sa.Column("auc", sa.Double(), nullable=True),
        sa.Column("log_loss", sa.Double(), nullable=True),
        sa.Column("holdout_accuracy", sa.Double(), nullable=True),
        sa.Column("holdout_auc", sa.Double(), nullable=True),
        sa.Column("drift_share", sa.Double(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("drift", sa.Boolean(), nullable=False),
        sa.Column("recommendation", sa.String(length=16), nullable=True),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("details", JSON_TYPE, nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "recommendation IS NULL OR recommendation IN ('keep', 'retrain', 'rollback')",
            name=op.f("ck_model_evaluations_recommendation_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["version"],
            ["model_versions.version"],
            name=op.f("fk_model_evaluations_version_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_evaluations")),
        sa.UniqueConstraint("version", "month", name="uq_model_evaluations_version_month"),
    )
    op.create_index(
        "ix_model_evaluations_type_month",
        "model_evaluations",
        ["model_type", "month"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_model_evaluations_type_month", table_name="model_evaluations")
    op.drop_table("model_evaluations")
