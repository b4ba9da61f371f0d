"""scheduler: node size columns + lessee, aggregates, server groups, instance placement

Revision ID: 0003
Revises: 0002
"""

import json

import sqlalchemy as sa
from alembic import op

import portal.core.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FREE_NODE_SQL = (
    "provision_state = 'available' AND reservation IS NULL AND instance_id IS NULL"
    " AND maintenance = false"
)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", portal.core.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", portal.core.db.UTCDateTime(), nullable=True),
    ]


def _as_int(value):  # same rule as portal.core.models.node._as_int, frozen here
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number < 2**62 else None


def upgrade() -> None:
    op.create_table(
        "aggregates",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("availability_zone", sa.String(255), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        *_timestamps(),
    )
    op.create_index("ix_aggregates_availability_zone", "aggregates", ["availability_zone"])
    op.create_table(
        "aggregate_nodes",
        sa.Column(
            "aggregate_id",
            sa.String(36),
            sa.ForeignKey("aggregates.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "node_id", sa.String(36), sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_index("ix_aggregate_nodes_node_id", "aggregate_nodes", ["node_id"])
    op.create_table(
        "aggregate_projects",
        sa.Column(
            "aggregate_id",
            sa.String(36),
            sa.ForeignKey("aggregates.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "project_id",
            sa.String(36),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "server_groups",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column(
            "project_id",
            sa.String(36),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("project_id", "name", name="uq_server_groups_name"),
    )
    op.create_index("ix_server_groups_project_id", "server_groups", ["project_id"])

    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("lessee", sa.String(36), nullable=True))
        batch.add_column(sa.Column("cpus", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("memory_mb", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("local_gb", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cpu_arch", sa.String(32), nullable=True))
        batch.create_foreign_key(
            "fk_nodes_lessee_projects", "projects", ["lessee"], ["id"], ondelete="RESTRICT"
        )
        batch.create_index("ix_nodes_lessee", ["lessee"])
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("availability_zone", sa.String(255), nullable=True))
        batch.add_column(sa.Column("server_group_id", sa.String(36), nullable=True))
        batch.add_column(
            sa.Column("scheduler_hints", sa.JSON(), nullable=False, server_default="{}")
        )
        batch.create_foreign_key(
            "fk_instances_server_group",
            "server_groups",
            ["server_group_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_instances_server_group_id", ["server_group_id"])

    # Backfill the size columns from the JSON properties of existing nodes.
    bind = op.get_bind()
    nodes = sa.table(
        "nodes",
        sa.column("id", sa.String),
        sa.column("properties", sa.JSON),
        sa.column("cpus", sa.Integer),
        sa.column("memory_mb", sa.Integer),
        sa.column("local_gb", sa.Integer),
        sa.column("cpu_arch", sa.String),
    )
    for node_id, props in bind.execute(sa.select(nodes.c.id, nodes.c.properties)).all():
        props = json.loads(props) if isinstance(props, str) else (props or {})
        arch = props.get("cpu_arch")
        bind.execute(
            nodes.update()
            .where(nodes.c.id == node_id)
            .values(
                cpus=_as_int(props.get("cpus")),
                memory_mb=_as_int(props.get("memory_mb")),
                local_gb=_as_int(props.get("local_gb")),
                cpu_arch=arch if isinstance(arch, str) and len(arch) <= 32 else None,
            )
        )
    op.create_index(
        "ix_nodes_free",
        "nodes",
        ["resource_class", "cpus", "memory_mb", "local_gb", "id"],
        postgresql_where=sa.text(FREE_NODE_SQL),
        sqlite_where=sa.text(FREE_NODE_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_nodes_free", table_name="nodes")
    with op.batch_alter_table("instances") as batch:
        batch.drop_index("ix_instances_server_group_id")
        batch.drop_constraint("fk_instances_server_group", type_="foreignkey")
        batch.drop_column("scheduler_hints")
        batch.drop_column("server_group_id")
        batch.drop_column("availability_zone")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_index("ix_nodes_lessee")
        batch.drop_constraint("fk_nodes_lessee_projects", type_="foreignkey")
        for column in ("cpu_arch", "local_gb", "memory_mb", "cpus", "lessee"):
            batch.drop_column(column)
    op.drop_table("server_groups")
    op.drop_table("aggregate_projects")
    op.drop_table("aggregate_nodes")
    op.drop_table("aggregates")
