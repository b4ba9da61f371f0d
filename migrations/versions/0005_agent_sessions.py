"""deploy agent sessions

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import portal.core.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_sessions",
        sa.Column(
            "node_id", sa.String(36), sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("boot_token_hash", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("issued_at", portal.core.db.UTCDateTime(), nullable=False),
        sa.Column("last_heartbeat_at", portal.core.db.UTCDateTime(), nullable=True),
        sa.Column("heartbeats", sa.Integer(), nullable=False),
        sa.Column("sent", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("agent_sessions")
