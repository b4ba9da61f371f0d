"""Placement groups: aggregates of nodes (zones, racks, tenant-restricted pools) and
tenants' server groups (affinity / anti-affinity at node, rack or zone level)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import Base, TimestampMixin, new_uuid

# Server group policies (Nova's names); the soft ones weigh instead of filtering.
POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
# The level a policy is evaluated at: the same node, rack (aggregate metadata "rack") or zone.
SCOPES = ("node", "rack", "zone")


class Aggregate(TimestampMixin, Base):
    """An admin-defined group of nodes. ``availability_zone`` makes it a zone; ``metadata``
    holds the location (``rack``, ``row``, ``room``) and anything else operators need."""

    __tablename__ = "aggregates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    availability_zone: Mapped[str | None] = mapped_column(String(255), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class AggregateNode(Base):
    __tablename__ = "aggregate_nodes"

    aggregate_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("aggregates.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class AggregateProject(Base):
    """Restricts an aggregate's nodes to the listed projects (none listed: everyone)."""

    __tablename__ = "aggregate_projects"

    aggregate_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("aggregates.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )


class ServerGroup(TimestampMixin, Base):
    __tablename__ = "server_groups"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_server_groups_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    policy: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(16), default="node")
