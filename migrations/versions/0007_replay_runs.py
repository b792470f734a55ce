"""replay runs and their scheduled jobs

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

A replay drives the loop over historical candles with a simulated clock. `replay_runs` keeps
its parameters and how far it got (the cursor), so the same command resumes an interrupted
replay; `replay_jobs` records every scheduled flow it ran, so none runs twice.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replay_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("params", JSON_TYPE, nullable=False),
        sa.Column("cursor", sa.DateTime(timezone=True), nullable=True),
        sa.Column("moments_done", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report", JSON_TYPE, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'interrupted', 'completed', 'failed')",
            name=op.f("ck_replay_runs_status_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay_runs")),
        sa.UniqueConstraint("name", name=op.f("uq_replay_runs_name")),
    )
    op.create_table(
        "replay_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("replay_id", sa.Uuid(), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("result", JSON_TYPE, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed')",
            name=op.f("ck_replay_jobs_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["replay_id"],
            ["replay_runs.id"],
            name=op.f("fk_replay_jobs_replay_id_replay_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay_jobs")),
        sa.UniqueConstraint(
            "replay_id", "job", "scheduled_at", name="uq_replay_jobs_replay_job_moment"
        ),
    )


def downgrade() -> None:
    op.drop_table("replay_jobs")
    op.drop_table("replay_runs")
