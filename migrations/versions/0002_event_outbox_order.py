"""event outbox order: a seq column numbering events in the order they were written

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Outbox ids are random and `created_at` is the caller's clock (shared by every event of one
change, simulated in a replay), so neither says which event came first. `seq` does: on
PostgreSQL a sequence is its server default; SQLite has no sequences, so the application
writes max(seq) + 1 there, inside the writer's transaction.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQUENCE = "event_outbox_seq"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(f"CREATE SEQUENCE {SEQUENCE} AS bigint")
    with op.batch_alter_table("event_outbox") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))

    # Number the rows already there: by their clock, then by insertion order where SQLite
    # keeps one (rowid); PostgreSQL keeps none, so ties fall back to the id.
    tiebreak = "id" if postgres else "rowid"
    op.execute(
        "UPDATE event_outbox SET seq = numbered.n FROM ("
        f"SELECT id, row_number() OVER (ORDER BY created_at, {tiebreak}) AS n FROM event_outbox"
        ") AS numbered WHERE event_outbox.id = numbered.id"
    )
    if postgres:
        op.execute(
            f"SELECT setval('{SEQUENCE}', coalesce((SELECT max(seq) FROM event_outbox), 0) + 1, false)"
        )

    with op.batch_alter_table("event_outbox") as batch:
        batch.alter_column(
            "seq",
            existing_type=sa.BigInteger(),
            nullable=False,
            server_default=sa.text(f"nextval('{SEQUENCE}')") if postgres else None,
        )
        batch.create_unique_constraint("uq_event_outbox_seq", ["seq"])
        batch.drop_index("ix_event_outbox_unpublished")
        batch.create_index("ix_event_outbox_pending", ["published_at", "seq"], unique=False)
    if postgres:
        # Dropping the column (downgrade) then drops the sequence with it.
        op.execute(f"ALTER SEQUENCE {SEQUENCE} OWNED BY event_outbox.seq")


def downgrade() -> None:
    with op.batch_alter_table("event_outbox") as batch:
        batch.drop_index("ix_event_outbox_pending")
        batch.create_index(
            "ix_event_outbox_unpublished", ["published_at", "created_at"], unique=False
        )
        batch.drop_constraint("uq_event_outbox_seq", type_="unique")
        batch.drop_column("seq")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE}")
