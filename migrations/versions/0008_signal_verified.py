"""trading_signals.verified: was the signal computed on the service's own candles?

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

A prediction request may carry its own candles. Signals computed on them are recorded with
`verified = false` and left out of A/B statistics and of the live performance that decides
promotions and retraining. Every signal recorded before this revision was computed on
stored candles or recorded by the platform itself: they are verified.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trading_signals") as batch:
        batch.add_column(
            sa.Column("verified", sa.Boolean(), server_default=sa.true(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("trading_signals") as batch:
        batch.drop_column("verified")
