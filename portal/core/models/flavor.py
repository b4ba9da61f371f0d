"""Flavors: what a tenant can ask for (Nova flavors with Ironic resource classes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import Base, TimestampMixin, new_uuid


class Flavor(TimestampMixin, Base):
    __tablename__ = "flavors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    cpu_arch: Mapped[str | None] = mapped_column(String(32))
    resource_class: Mapped[str] = mapped_column(String(80), default="baremetal")
    # "capabilities:KEY": "VALUE", "trait:NAME": "required" | "forbidden"
    extra_specs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class FlavorAccess(Base):
    """Projects allowed to use a private flavor."""

    __tablename__ = "flavor_access"

    flavor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("flavors.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
