"""model stage history and artifact checksums

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

`model_stage_history` keeps every stage change ever made (when, from what to what, why, by
whom), which MLflow cannot answer ("which model was serving at 14:00 last Tuesday?").
`model_versions.artifact_sha256` is the checksum of a version's model files at registration,
verified whenever the model is loaded.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'training', 'staging', 'production', 'archived'"


def upgrade() -> None:
    op.create_table(
        "model_stage_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=False),
        sa.Column("from_status", sa.String(length=10), nullable=True),
        sa.Column("to_status", sa.String(length=10), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("ab_test_id", sa.Uuid(), nullable=True),
        sa.Column("details", JSON_TYPE, nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            f"from_status IS NULL OR from_status IN ({STATUSES})",
            name=op.f("ck_model_stage_history_from_status_valid"),
        ),
        sa.CheckConstraint(
            f"to_status IN ({STATUSES})", name=op.f("ck_model_stage_history_to_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["version"],
            ["model_versions.version"],
            name=op.f("fk_model_stage_history_version_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_stage_history")),
    )
    op.create_index(
        "ix_model_stage_history_type_time",
        "model_stage_history",
        ["model_type", "changed_at"],
        unique=False,
    )
    op.create_index(
        "ix_model_stage_history_version", "model_stage_history", ["version"], unique=False
    )
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("artifact_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("artifact_sha256")
    op.drop_index("ix_model_stage_history_version", table_name="model_stage_history")
    op.drop_index("ix_model_stage_history_type_time", table_name="model_stage_history")
    op.drop_table("model_stage_history")
