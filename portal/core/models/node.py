"""Bare-metal nodes and their NICs (ports), as Ironic users know them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.db import Base, TimestampMixin, new_uuid


class Node(TimestampMixin, Base):
    __tablename__ = "nodes"
    __table_args__ = (
        # The scheduler's coarse filter: schedulable nodes of one resource class.
        Index("ix_nodes_sched", "provision_state", "resource_class", "maintenance"),
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
    last_error: Mapped[str | None] = mapped_column(Text)
    reservation: Mapped[str | None] = mapped_column(String(255), index=True)
    reserved_at: Mapped[datetime | None] = mapped_column()
    owner: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="RESTRICT"), index=True
    )
    instance_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    # The RQ job working on this node, so the reconciler can tell a lost job from a slow one.
    job_id: Mapped[str | None] = mapped_column(String(64))
    # Nodes that failed recently are weighed down by the scheduler.
    recent_failures: Mapped[int] = mapped_column(Integer, default=0)

    # Loaded on access: most reads of a node (locks, state changes) never need its ports.
    ports: Mapped[list[Port]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="Port.address"
    )


class Port(TimestampMixin, Base):
    __tablename__ = "ports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    node_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("nodes.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(17), unique=True)
    physical_network: Mapped[str | None] = mapped_column(String(64))
    pxe_enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    node: Mapped[Node] = relationship(back_populates="ports")
