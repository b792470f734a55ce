"""store_identity: which MLflow store the tables belong to

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Pointing `AIFX_DATABASE_URL` at a new database while MLflow stayed on the old store let
`aifx models reconcile` archive every version MLflow had. The tables now record the identity
of their MLflow store on first use (the store keeps the same identity as a tag), and
reconcile refuses to act on a store that is not theirs. A database upgraded to this revision
records its store the next time reconcile runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_identity",
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("identity", sa.String(length=36), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("store", name=op.f("pk_store_identity")),
    )


def downgrade() -> None:
    op.drop_table("store_identity")
