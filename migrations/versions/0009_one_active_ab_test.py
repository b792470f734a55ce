"""one active A/B test per model type

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

`create_test` checked for a running test and then inserted, with nothing in the database to
stop two concurrent creates from both passing the check; two active tests of one model type
then made serving refuse every prediction. A partial unique index on `model_type` where the
status is active makes the database refuse the second one.

The upgrade refuses (and changes nothing) if the data already holds two active tests of one
model type: which one to keep is a decision for a person (`aifx ab cancel ID`), not for a
migration.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_model_ab_test_one_active"
ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    doubled = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT model_type, count(*) FROM model_ab_test WHERE status = 'active' "
                "GROUP BY model_type HAVING count(*) > 1 ORDER BY model_type"
            )
        )
        .all()
    )
    if doubled:
        found = ", ".join(f"{n} active {t} tests" for t, n in doubled)
        raise RuntimeError(
            f"cannot upgrade to 0009: {found}; keep one per model type "
            "(`aifx ab list --status active`, then `aifx ab cancel ID`) and upgrade again"
        )
    op.create_index(
        INDEX,
        "model_ab_test",
        ["model_type"],
        unique=True,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="model_ab_test")
