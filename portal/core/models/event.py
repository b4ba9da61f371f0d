"""The events table is an outbox: written in the same transaction as the change it records.

Consumers (webhooks, billing, analytics) read it through :mod:`portal.core.outbox` and
remember the last event id they processed, so one table serves any number of independent
consumers. On PostgreSQL ids are drawn at insert but transactions commit in any order, so
each row also records its transaction id (``txid``) and readers only see events of
transactions older than every transaction still running (see ``outbox``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, FetchedValue, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.db import Base, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_resource", "resource_type", "resource_id"),
        Index("ix_events_project", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(80), index=True)
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(36))
    project_id: Mapped[str | None] = mapped_column(String(36))
    actor: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # PostgreSQL fills this with txid_current(); NULL on SQLite, where writers are serialized.
    txid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())
