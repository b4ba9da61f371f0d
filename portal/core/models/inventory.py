"""What inspection read from a node's hardware, kept for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import Base, utcnow


class NodeInventory(Base):
    """The last inspection of a node: the raw inventory and what was applied from it."""

    __tablename__ = "node_inventories"

    node_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    # The interface that produced it, e.g. "redfish", "ipmi", "fake".
    source: Mapped[str] = mapped_column(String(40))
    # As the BMC reported it (secrets never appear in it: BMCs do not report them).
    inventory: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What inspection wrote to the node: properties, capabilities, ports created, skipped MACs.
    applied: Mapped[dict[str, Any]] = mapped_column(default=dict)
    collected_at: Mapped[datetime] = mapped_column(default=utcnow)
