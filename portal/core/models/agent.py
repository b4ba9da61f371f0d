"""The deploy agent's session with the portal, one per node and operation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import Base, utcnow


class AgentSession(Base):
    """Kept apart from ``driver_internal_info`` on purpose: the agent calls in while a job
    may be checkpointing the node's plan, and neither must overwrite the other."""

    __tablename__ = "agent_sessions"

    node_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    # The operation's boot token, hashed (sha256 hex): which netboot this agent came from.
    boot_token_hash: Mapped[str] = mapped_column(String(64))
    # The agent token, hashed; handed out once, at lookup.
    token_hash: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column()
    heartbeats: Mapped[int] = mapped_column(Integer, default=0)
    # Ids of commands handed out, and each command's result as the agent reported it.
    sent: Mapped[list[str]] = mapped_column(default=list)
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(String(255))
