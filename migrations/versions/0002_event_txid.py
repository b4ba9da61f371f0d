"""events.txid: commit-ordered reading of the outbox on PostgreSQL

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.add_column(
            "events",
            sa.Column(
                "txid", sa.BigInteger(), nullable=True, server_default=sa.text("txid_current()")
            ),
        )
        op.create_index("ix_events_txid", "events", ["txid", "id"])
    else:
        with op.batch_alter_table("events") as batch:
            batch.add_column(sa.Column("txid", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_events_txid", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("txid")
