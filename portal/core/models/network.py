"""Networks, subnets and IP allocations (a minimal Neutron)."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.db import Base, TimestampMixin, new_uuid


class Network(TimestampMixin, Base):
    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # None: a provider network, usable by every tenant when ``shared``.
    project_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("projects.id"))
    network_type: Mapped[str] = mapped_column(String(16), default="flat")
    physical_network: Mapped[str | None] = mapped_column(String(64))
    segmentation_id: Mapped[int | None] = mapped_column(Integer)
    shared: Mapped[bool] = mapped_column(Boolean, default=True)

    subnets: Mapped[list[Subnet]] = relationship(lazy="selectin", cascade="all, delete-orphan")


class Subnet(TimestampMixin, Base):
    __tablename__ = "subnets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    network_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64))
    pool_start: Mapped[str] = mapped_column(String(64))
    pool_end: Mapped[str] = mapped_column(String(64))


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
