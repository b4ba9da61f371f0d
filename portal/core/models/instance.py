"""Instances (a tenant's bare-metal server) and keypairs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.db import Base, TimestampMixin, new_uuid
from portal.core.models.network import InstanceVif, IPAllocation


class Instance(TimestampMixin, Base):
    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_project_status", "project_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(36), ForeignKey("projects.id"))
    user_id: Mapped[str | None] = mapped_column(String(36))
    flavor_id: Mapped[str] = mapped_column(String(36), ForeignKey("flavors.id"))
    image_id: Mapped[str] = mapped_column(String(36), ForeignKey("images.id"))
    node_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("nodes.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="BUILD")
    task_state: Mapped[str | None] = mapped_column(String(40))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    # {"message": ..., "code": ..., "details": {...}}; details may be admin-only.
    fault: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # What was reserved against the quota, so release returns exactly that.
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    # Snapshot of the keypairs at create time: [{"name", "public_key", "fingerprint"}]
    ssh_keys: Mapped[list[Any]] = mapped_column(default=list)
    user_data: Mapped[str | None] = mapped_column(Text)
    # Where it may go: a zone, a server group, hints such as {"same_rack_as": [ids]}.
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    server_group_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("server_groups.id", ondelete="SET NULL"), index=True
    )
    scheduler_hints: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Nova's server metadata: the tenant's key/value pairs, on the config drive ("meta").
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # The RQ job working on this instance; the reconciler re-enqueues if it vanished.
    job_id: Mapped[str | None] = mapped_column(String(64))
    launched_at: Mapped[datetime | None] = mapped_column()
    terminated_at: Mapped[datetime | None] = mapped_column()

    # Loaded on access (jobs rarely need them); lists ask for selectinload explicitly.
    addresses: Mapped[list[IPAllocation]] = relationship(order_by="IPAllocation.address")
    # The requested networks, in request order (one node NIC each).
    vifs: Mapped[list[InstanceVif]] = relationship(
        order_by="InstanceVif.index", cascade="all, delete-orphan", passive_deletes=True
    )


class Keypair(TimestampMixin, Base):
    __tablename__ = "keypairs"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_keypairs_user_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(String(36), ForeignKey("projects.id"))
    type: Mapped[str] = mapped_column(String(16), default="ssh")
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
