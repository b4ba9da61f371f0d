"""hardware: node fault + power sync failures, port source, node inventories

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import portal.core.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("fault", sa.String(40), nullable=True))
        batch.add_column(
            sa.Column("power_sync_failures", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("ports") as batch:
        batch.add_column(
            sa.Column("source", sa.String(20), nullable=False, server_default="admin")
        )
    op.create_table(
        "node_inventories",
        sa.Column(
            "node_id", sa.String(36), sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("inventory", sa.JSON(), nullable=False),
        sa.Column("applied", sa.JSON(), nullable=False),
        sa.Column("collected_at", portal.core.db.UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_inventories")
    with op.batch_alter_table("ports") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("power_sync_failures")
        batch.drop_column("fault")
