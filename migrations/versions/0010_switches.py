"""switches: managed switches, node ports' local_link_connection, switch port desired state

Revision ID: 0010_switches
Revises: 0008 (re-chained after 0009 when the networks branch lands)
"""

import sqlalchemy as sa
from alembic import op

import portal.core.db

revision = "0010_switches"
down_revision = "0009_tenant_networks"
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", portal.core.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", portal.core.db.UTCDateTime(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "switches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("driver", sa.String(40), nullable=False),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("device_type", sa.String(64), nullable=True),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("credentials", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("maintenance", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("maintenance_reason", sa.Text(), nullable=True),
        *_timestamps(),
    )
    with op.batch_alter_table("ports") as batch:
        batch.add_column(sa.Column("local_link_connection", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("switch_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("switch_port_name", sa.String(255), nullable=True))
        batch.create_foreign_key(
            "fk_ports_switch_id_switches", "switches", ["switch_id"], ["id"], ondelete="RESTRICT"
        )
        batch.create_index("ix_ports_switch_id", ["switch_id"])
        batch.create_unique_constraint("uq_ports_switch_port", ["switch_id", "switch_port_name"])
    op.create_table(
        "switch_ports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "switch_id",
            sa.String(36),
            sa.ForeignKey("switches.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column(
            "node_port_id",
            sa.String(36),
            sa.ForeignKey("ports.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("desired", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("instance_id", sa.String(36), nullable=True),
        sa.Column("desired_generation", sa.Integer(), nullable=False),
        sa.Column("applied_generation", sa.Integer(), nullable=False),
        sa.Column("applied_at", portal.core.db.UTCDateTime(), nullable=True),
        sa.Column("observed", sa.JSON(), nullable=True),
        sa.Column("observed_at", portal.core.db.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.UniqueConstraint("switch_id", "name", name="uq_switch_ports_switch_id_name"),
    )
    op.create_index("ix_switch_ports_node_port_id", "switch_ports", ["node_port_id"])
    op.create_index("ix_switch_ports_instance_id", "switch_ports", ["instance_id"])
    op.create_index(
        "ix_switch_ports_pending",
        "switch_ports",
        ["switch_id", "desired_generation", "applied_generation"],
    )


def downgrade() -> None:
    op.drop_table("switch_ports")
    with op.batch_alter_table("ports") as batch:
        batch.drop_constraint("uq_ports_switch_port", type_="unique")
        batch.drop_index("ix_ports_switch_id")
        batch.drop_constraint("fk_ports_switch_id_switches", type_="foreignkey")
        batch.drop_column("switch_port_name")
        batch.drop_column("switch_id")
        batch.drop_column("local_link_connection")
    op.drop_table("switches")
