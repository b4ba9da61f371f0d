"""Managed switches and the desired state of every switch port the portal manages.

A node port names the switch port its cable goes to (``Port.local_link_connection``, as
Ironic has it); :class:`SwitchPort` holds what that switch port should be (access or trunk,
VLANs) with a generation counter, so a worker can tell pending changes from applied ones
and reconciliation can compare it with what it last read from the switch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import Base, TimestampMixin, new_uuid

PURPOSES = ("provisioning", "tenant", "quarantine")


class Switch(TimestampMixin, Base):
    __tablename__ = "switches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    driver: Mapped[str] = mapped_column(String(40))
    # Where the driver connects (none for a local Open vSwitch).
    address: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    # The command set of the netmiko driver: cisco_ios, arista_eos, juniper_junos, ovs_linux…
    device_type: Mapped[str | None] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(255))
    # password / private_key / …: every value a Fernet token (portal.core.secrets), never clear.
    credentials: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # provisioning_vlan, allowed_vlans, protected_ports, reconcile, driver keys (see
    # portal.core.switch_settings); never secrets (those go in ``credentials``).
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str | None] = mapped_column(Text)
    # A switch in maintenance is left alone by workers (no changes, no reconciliation).
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    maintenance_reason: Mapped[str | None] = mapped_column(Text)


class SwitchPort(TimestampMixin, Base):
    """The desired state of one managed switch port, and what was last applied and read.

    ``desired_generation`` grows each time ``desired`` changes; a worker that applied
    generation N sets ``applied_generation`` to N. Equal generations: nothing pending.
    """

    __tablename__ = "switch_ports"
    __table_args__ = (
        UniqueConstraint("switch_id", "name", name="uq_switch_ports_switch_id_name"),
        # "Which ports of this switch are pending?" is a worker's main question.
        Index("ix_switch_ports_pending", "switch_id", "desired_generation", "applied_generation"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    switch_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("switches.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(255))
    node_port_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("ports.id", ondelete="SET NULL"), index=True
    )
    # {"mode": "access"|"trunk", "vlan": int|None, "trunk_vlans": [int], "enabled": bool}
    desired: Mapped[dict[str, Any]] = mapped_column(default=dict)
    purpose: Mapped[str] = mapped_column(String(20))
    instance_id: Mapped[str | None] = mapped_column(String(36), index=True)
    desired_generation: Mapped[int] = mapped_column(Integer, default=1)
    applied_generation: Mapped[int] = mapped_column(Integer, default=0)
    applied_at: Mapped[datetime | None] = mapped_column()
    # The port as reconciliation last read it from the switch (same shape as ``desired``).
    observed: Mapped[dict[str, Any] | None] = mapped_column()
    observed_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
