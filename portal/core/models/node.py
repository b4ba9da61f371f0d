"""Bare-metal nodes and their NICs (ports), as Ironic users know them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from portal.core.db import Base, TimestampMixin, new_uuid
from portal.core.states import NODE_BOUND_SQL

# Matches the scheduler's coarse WHERE clause, so the partial index serves it.
FREE_NODE_SQL = (
    "provision_state = 'available' AND reservation IS NULL AND instance_id IS NULL"
    " AND maintenance = false"
)
# properties → typed columns the scheduler filters and sorts on in SQL
SIZE_COLUMNS = {"cpus": "cpus", "memory_mb": "memory_mb", "local_gb": "local_gb"}


def _as_int(value: Any) -> int | None:
    """A size property as an int, or None when it is missing or not a sane number."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number < 2**62 else None


class Node(TimestampMixin, Base):
    __tablename__ = "nodes"
    __table_args__ = (
        # The scheduler's coarse filter: schedulable nodes of one resource class.
        Index("ix_nodes_sched", "provision_state", "resource_class", "maintenance"),
        # Only free nodes, by class and size, in the order select+claim reads them.
        Index(
            "ix_nodes_free",
            "resource_class",
            "cpus",
            "memory_mb",
            "local_gb",
            "id",
            postgresql_where=text(FREE_NODE_SQL),
            sqlite_where=text(FREE_NODE_SQL),
        ),
        # A node bound to an instance is deploying, active, being deleted or failed in
        # one of those: never available (or manageable...) while an instance names it.
        CheckConstraint(NODE_BOUND_SQL, name="bound_state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str | None] = mapped_column(String(255), unique=True)
    resource_class: Mapped[str] = mapped_column(String(80), default="baremetal")
    driver: Mapped[str] = mapped_column(String(40), default="fake")
    # Secret fields (any key ending in "password") hold Fernet tokens, never clear text.
    driver_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Private bookkeeping of drivers and deploy steps (Ironic's driver_internal_info).
    driver_internal_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    traits: Mapped[list[str]] = mapped_column(default=list)
    provision_state: Mapped[str] = mapped_column(String(30), default="enroll", index=True)
    target_provision_state: Mapped[str | None] = mapped_column(String(30))
    provision_updated_at: Mapped[datetime | None] = mapped_column()
    power_state: Mapped[str | None] = mapped_column(String(20))
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    maintenance_reason: Mapped[str | None] = mapped_column(Text)
    # Why the *system* put the node in maintenance (e.g. "power failure"); None when an admin
    # did. Only maintenance with a fault is ever lifted automatically, by whoever set it.
    fault: Mapped[str | None] = mapped_column(String(40))
    # Consecutive failed power-state reads by the power sync loop.
    power_sync_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    reservation: Mapped[str | None] = mapped_column(String(255), index=True)
    reserved_at: Mapped[datetime | None] = mapped_column()
    owner: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="RESTRICT"), index=True
    )
    # A tenant the owner (or the provider) lends the node to: it may schedule on it too.
    lessee: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="RESTRICT"), index=True
    )
    # Derived from ``properties`` on every assignment (see _derive_sizes), never set directly.
    cpus: Mapped[int | None] = mapped_column(Integer)
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    local_gb: Mapped[int | None] = mapped_column(Integer)
    cpu_arch: Mapped[str | None] = mapped_column(String(32))
    instance_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    # The RQ job working on this node, so the reconciler can tell a lost job from a slow one.
    job_id: Mapped[str | None] = mapped_column(String(64))
    # Nodes that failed recently are weighed down by the scheduler.
    recent_failures: Mapped[int] = mapped_column(Integer, default=0)

    @validates("properties")
    def _derive_sizes(self, _key: str, properties: dict[str, Any] | None) -> dict[str, Any]:
        props = properties or {}
        for prop, column in SIZE_COLUMNS.items():
            setattr(self, column, _as_int(props.get(prop)))
        arch = props.get("cpu_arch")
        self.cpu_arch = arch if isinstance(arch, str) and len(arch) <= 32 else None
        return props

    # Loaded on access: most reads of a node (locks, state changes) never need its ports.
    ports: Mapped[list[Port]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="Port.address"
    )


class Port(TimestampMixin, Base):
    __tablename__ = "ports"
    __table_args__ = (
        # One switch port has one cable: two NICs never name the same one.
        UniqueConstraint("switch_id", "switch_port_name", name="uq_ports_switch_port"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    node_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("nodes.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(17), unique=True)
    physical_network: Mapped[str | None] = mapped_column(String(64))
    pxe_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Who created the port: "admin" (entered by hand; inspection never deletes it) or
    # "inspection" (discovered from the hardware).
    source: Mapped[str] = mapped_column(String(20), default="admin")
    # Where the cable goes, as Ironic has it: {"switch_id", "port_id", "switch_info"}, kept
    # as given; switch_id and switch_port_name are what it resolved to, for cheap joins.
    local_link_connection: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    switch_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("switches.id", ondelete="RESTRICT"), index=True
    )
    switch_port_name: Mapped[str | None] = mapped_column(String(255))

    node: Mapped[Node] = relationship(back_populates="ports")
