"""tenant networks: segment ranges, per-project networks, full subnets, instance VIFs, quotas

Existing data is kept: the provider network (flat, no VLAN), its subnet (its pool becomes
``allocation_pools``), every allocation. Each live instance gets one VIF per network it
asked for (``requested_networks``, dropped here), else per network it holds addresses on,
else one on the provider network (what the claim would have picked); its allocations are
tied to the matching VIF.

Revision ID: 0009_tenant_networks
Revises: 0008
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

import portal.core.db

revision = "0009_tenant_networks"
down_revision = "0008"
branch_labels = None
depends_on = None


def _json(value: Any) -> Any:
    """A JSON column read with a plain SELECT: text on SQLite, decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", portal.core.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", portal.core.db.UTCDateTime(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "segment_ranges",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("physical_network", sa.String(64), nullable=False),
        sa.Column("network_type", sa.String(16), nullable=False),
        sa.Column("minimum", sa.Integer(), nullable=False),
        sa.Column("maximum", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "minimum >= 1 AND maximum <= 4094 AND minimum <= maximum",
            name=op.f("ck_segment_ranges_vlan_bounds"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_ranges")),
    )
    op.create_index(
        "ix_segment_ranges_physnet", "segment_ranges", ["physical_network", "minimum"]
    )

    with op.batch_alter_table("networks") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(sa.Column("mtu", sa.Integer(), nullable=True))
        batch.drop_constraint("uq_networks_name", type_="unique")
        batch.create_unique_constraint("uq_networks_project_name", ["project_id", "name"])
        batch.create_unique_constraint(
            "uq_networks_segment", ["physical_network", "segmentation_id"]
        )
        batch.create_check_constraint(
            "segment",
            "(network_type = 'flat' AND segmentation_id IS NULL) OR (network_type = 'vlan' "
            "AND segmentation_id BETWEEN 1 AND 4094)",
        )
        batch.create_index("ix_networks_project_id", ["project_id"])
    op.create_index(
        "uq_networks_admin_name",
        "networks",
        ["name"],
        unique=True,
        sqlite_where=sa.text("project_id IS NULL"),
        postgresql_where=sa.text("project_id IS NULL"),
    )
    op.create_index(
        "uq_networks_flat_physnet",
        "networks",
        ["physical_network"],
        unique=True,
        sqlite_where=sa.text("network_type = 'flat'"),
        postgresql_where=sa.text("network_type = 'flat'"),
    )

    _upgrade_subnets()

    op.create_table(
        "instance_vifs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("network_id", sa.String(36), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("fixed_ip", sa.String(64), nullable=True),
        sa.Column("port_id", sa.String(36), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_instance_vifs_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_instance_vifs_network_id_networks")
        ),
        sa.ForeignKeyConstraint(
            ["port_id"],
            ["ports.id"],
            name=op.f("fk_instance_vifs_port_id_ports"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_vifs")),
        sa.UniqueConstraint("instance_id", "index", name="uq_instance_vifs_index"),
    )
    for column in ("instance_id", "network_id", "port_id"):
        op.create_index(f"ix_instance_vifs_{column}", "instance_vifs", [column])
    with op.batch_alter_table("ip_allocations") as batch:
        batch.add_column(sa.Column("vif_id", sa.String(36), nullable=True))
        batch.create_foreign_key(
            "fk_ip_allocations_vif_id_instance_vifs",
            "instance_vifs",
            ["vif_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_ip_allocations_vif_id", ["vif_id"])

    _make_vifs()
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("requested_networks")

    with op.batch_alter_table("quotas") as batch:
        batch.add_column(sa.Column("networks", sa.Integer(), nullable=False, server_default="10"))
        batch.add_column(sa.Column("subnets", sa.Integer(), nullable=False, server_default="20"))
        for column in ("networks_used", "subnets_used"):
            batch.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE quotas SET networks_used = (SELECT count(*) FROM networks "
        "WHERE networks.project_id = quotas.project_id), subnets_used = (SELECT count(*) "
        "FROM subnets WHERE subnets.project_id = quotas.project_id)"
    )


def _upgrade_subnets() -> None:
    with op.batch_alter_table("subnets") as batch:
        batch.add_column(sa.Column("name", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("project_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("ip_version", sa.Integer(), nullable=False, server_default="4"))
        for column in ("dns_nameservers", "host_routes", "allocation_pools"):
            batch.add_column(sa.Column(column, sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.create_foreign_key(
            "fk_subnets_project_id_projects", "projects", ["project_id"], ["id"]
        )
    bind = op.get_bind()
    subnets = sa.table(
        "subnets",
        sa.column("id", sa.String),
        sa.column("project_id", sa.String),
        sa.column("ip_version", sa.Integer),
        sa.column("allocation_pools", sa.JSON),
    )
    rows = bind.execute(
        sa.text(
            "SELECT s.id, s.cidr, s.pool_start, s.pool_end, n.project_id FROM subnets s "
            "JOIN networks n ON n.id = s.network_id"
        )
    ).all()
    for sid, cidr, start, end, project_id in rows:
        bind.execute(
            subnets.update()
            .where(subnets.c.id == sid)
            .values(
                project_id=project_id,
                ip_version=ipaddress.ip_network(cidr, strict=False).version,
                allocation_pools=[{"start": start, "end": end}],
            )
        )
    with op.batch_alter_table("subnets") as batch:
        batch.drop_column("pool_start")
        batch.drop_column("pool_end")


def _make_vifs() -> None:
    bind = op.get_bind()
    networks = {row[0] for row in bind.execute(sa.text("SELECT id FROM networks"))}
    provider = bind.execute(
        sa.text(
            "SELECT id FROM networks WHERE project_id IS NULL AND shared = :yes "
            "ORDER BY created_at LIMIT 1"
        ),
        {"yes": True},
    ).scalar()
    held: dict[str, list[str]] = {}
    for inst_id, net_id in bind.execute(
        sa.text(
            "SELECT instance_id, network_id FROM ip_allocations ORDER BY instance_id, address"
        )
    ):
        if net_id not in held.setdefault(inst_id, []):
            held[inst_id].append(net_id)
    now = portal.core.db.utcnow()
    vifs = sa.table(
        "instance_vifs",
        sa.column("id", sa.String),
        sa.column("instance_id", sa.String),
        sa.column("network_id", sa.String),
        sa.column("index", sa.Integer),
        sa.column("created_at", portal.core.db.UTCDateTime),
    )
    instances = bind.execute(
        sa.text("SELECT id, requested_networks FROM instances WHERE status <> 'DELETED'")
    ).all()
    for inst_id, requested in instances:
        wanted = [n for n in (_json(requested) or []) if n in networks]
        wanted = wanted or held.get(inst_id) or ([provider] if provider else [])
        for index, net_id in enumerate(dict.fromkeys(wanted)):
            vif_id = str(uuid.uuid4())
            bind.execute(
                vifs.insert().values(
                    id=vif_id, instance_id=inst_id, network_id=net_id, index=index, created_at=now
                )
            )
            bind.execute(
                sa.text(
                    "UPDATE ip_allocations SET vif_id = :vif "
                    "WHERE instance_id = :inst AND network_id = :net"
                ),
                {"vif": vif_id, "inst": inst_id, "net": net_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("quotas") as batch:
        for column in ("networks", "subnets", "networks_used", "subnets_used"):
            batch.drop_column(column)
    with op.batch_alter_table("instances") as batch:
        batch.add_column(
            sa.Column("requested_networks", sa.JSON(), nullable=False, server_default="[]")
        )
    bind = op.get_bind()
    instances = sa.table(
        "instances", sa.column("id", sa.String), sa.column("requested_networks", sa.JSON)
    )
    wanted: dict[str, list[str]] = {}
    for inst_id, net_id in bind.execute(
        sa.text('SELECT instance_id, network_id FROM instance_vifs ORDER BY instance_id, "index"')
    ):
        wanted.setdefault(inst_id, []).append(net_id)
    for inst_id, nets in wanted.items():
        bind.execute(
            instances.update().where(instances.c.id == inst_id).values(requested_networks=nets)
        )
    with op.batch_alter_table("ip_allocations") as batch:
        batch.drop_index("ix_ip_allocations_vif_id")
        batch.drop_constraint("fk_ip_allocations_vif_id_instance_vifs", type_="foreignkey")
        batch.drop_column("vif_id")
    op.drop_table("instance_vifs")

    with op.batch_alter_table("subnets") as batch:
        batch.add_column(sa.Column("pool_start", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("pool_end", sa.String(64), nullable=False, server_default=""))
    for sid, pools in bind.execute(sa.text("SELECT id, allocation_pools FROM subnets")).all():
        pools = _json(pools) or [{"start": "", "end": ""}]
        bind.execute(
            sa.text("UPDATE subnets SET pool_start = :s, pool_end = :e WHERE id = :id"),
            {"s": pools[0]["start"], "e": pools[-1]["end"], "id": sid},
        )
    with op.batch_alter_table("subnets") as batch:
        batch.drop_constraint("fk_subnets_project_id_projects", type_="foreignkey")
        for column in (
            "name",
            "project_id",
            "ip_version",
            "dns_nameservers",
            "host_routes",
            "allocation_pools",
            "description",
        ):
            batch.drop_column(column)

    op.drop_index("uq_networks_flat_physnet", "networks")
    op.drop_index("uq_networks_admin_name", "networks")
    with op.batch_alter_table("networks") as batch:
        batch.drop_index("ix_networks_project_id")
        batch.drop_constraint("segment", type_="check")
        batch.drop_constraint("uq_networks_segment", type_="unique")
        batch.drop_constraint("uq_networks_project_name", type_="unique")
        batch.create_unique_constraint("uq_networks_name", ["name"])
        batch.drop_column("mtu")
        batch.drop_column("description")
    op.drop_index("ix_segment_ranges_physnet", "segment_ranges")
    op.drop_table("segment_ranges")
