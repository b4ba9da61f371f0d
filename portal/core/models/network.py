"""Segment ranges, networks, subnets, instance VIFs and IP allocations (a minimal Neutron).

The database, not the Python code, holds the guarantees: one network per (physical network,
VLAN id), at most one flat network per physical network, one holder per (subnet, address),
network names unique per project (and among admin-made networks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.db import Base, TimestampMixin, new_uuid

if TYPE_CHECKING:
    from portal.core.models.node import Port

VLAN = "vlan"
FLAT = "flat"
NETWORK_TYPES = (VLAN, FLAT)
MIN_VLAN, MAX_VLAN = 1, 4094


class SegmentRange(TimestampMixin, Base):
    """VLAN ids of one physical network that tenant networks are given from (admin-made)."""

    __tablename__ = "segment_ranges"
    __table_args__ = (
        CheckConstraint(
            f"minimum >= {MIN_VLAN} AND maximum <= {MAX_VLAN} AND minimum <= maximum",
            name="vlan_bounds",
        ),
        Index("ix_segment_ranges_physnet", "physical_network", "minimum"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    physical_network: Mapped[str] = mapped_column(String(64))
    network_type: Mapped[str] = mapped_column(String(16), default=VLAN)
    minimum: Mapped[int] = mapped_column(Integer)
    maximum: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)


class Network(TimestampMixin, Base):
    __tablename__ = "networks"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_networks_project_name"),
        # Names of admin-made networks (no project; NULLs never clash in the key above).
        Index(
            "uq_networks_admin_name",
            "name",
            unique=True,
            sqlite_where=text("project_id IS NULL"),
            postgresql_where=text("project_id IS NULL"),
        ),
        # Never two networks on one VLAN of one physical network (NULL ids never clash).
        UniqueConstraint("physical_network", "segmentation_id", name="uq_networks_segment"),
        # At most one untagged (flat) network per physical network.
        Index(
            "uq_networks_flat_physnet",
            "physical_network",
            unique=True,
            sqlite_where=text("network_type = 'flat'"),
            postgresql_where=text("network_type = 'flat'"),
        ),
        CheckConstraint(
            "(network_type = 'flat' AND segmentation_id IS NULL) OR (network_type = 'vlan' "
            f"AND segmentation_id BETWEEN {MIN_VLAN} AND {MAX_VLAN})",
            name="segment",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    # None: a provider network (admin-made), usable by every tenant when ``shared``.
    project_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("projects.id"), index=True
    )
    network_type: Mapped[str] = mapped_column(String(16), default=FLAT)
    physical_network: Mapped[str | None] = mapped_column(String(64))
    segmentation_id: Mapped[int | None] = mapped_column(Integer)
    shared: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)
    mtu: Mapped[int | None] = mapped_column(Integer)

    subnets: Mapped[list[Subnet]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="Subnet.created_at"
    )


class Subnet(TimestampMixin, Base):
    __tablename__ = "subnets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), default="")
    network_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    # The network's project (None for admin-made networks): what tenants' lists filter on.
    project_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("projects.id"))
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64))
    dns_nameservers: Mapped[list[Any]] = mapped_column(default=list)
    # [{"destination": cidr, "nexthop": address}]
    host_routes: Mapped[list[Any]] = mapped_column(default=list)
    # [{"start": address, "end": address}]: what automatic allocation hands out, in order.
    allocation_pools: Mapped[list[Any]] = mapped_column(default=list)
    description: Mapped[str | None] = mapped_column(Text)


class InstanceVif(TimestampMixin, Base):
    """One requested network of an instance, in request order: it becomes one NIC of the
    node. ``port_id`` is the node's port (NIC) bound to it at claim time.

    ``network_id`` has no ON DELETE: a network some VIF still names cannot be deleted."""

    __tablename__ = "instance_vifs"
    __table_args__ = (UniqueConstraint("instance_id", "index", name="uq_instance_vifs_index"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    instance_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("instances.id", ondelete="CASCADE"), index=True
    )
    network_id: Mapped[str] = mapped_column(String(36), ForeignKey("networks.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    fixed_ip: Mapped[str | None] = mapped_column(String(64))
    port_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("ports.id", ondelete="SET NULL"), index=True
    )

    network: Mapped[Network] = relationship(lazy="joined", innerjoin=True)
    port: Mapped[Port | None] = relationship(lazy="joined")
    addresses: Mapped[list[IPAllocation]] = relationship(
        order_by="IPAllocation.address", viewonly=True
    )


class IPAllocation(TimestampMixin, Base):
    """One address held by one instance. The unique key is what makes an address single-use."""

    __tablename__ = "ip_allocations"
    __table_args__ = (UniqueConstraint("subnet_id", "address", name="uq_ip_allocations_address"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    subnet_id: Mapped[str] = mapped_column(String(36), ForeignKey("subnets.id", ondelete="CASCADE"))
    network_id: Mapped[str] = mapped_column(String(36), ForeignKey("networks.id"))
    address: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("instances.id", ondelete="CASCADE"), index=True
    )
    # The VIF the address is on (None only for rows older than VIFs with no VIF to match).
    vif_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("instance_vifs.id", ondelete="CASCADE"), index=True
    )

    subnet: Mapped[Subnet] = relationship(lazy="joined", innerjoin=True, viewonly=True)
