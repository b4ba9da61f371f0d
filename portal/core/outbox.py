"""Reading the events outbox in commit order, so a consumer that remembers the last event
id it processed never skips one.

SQLite serializes writers, so id order is commit order. On PostgreSQL an event with a
lower id can commit after one with a higher id; reading in (txid, id) order and only up to
the oldest still-running transaction (``txid_snapshot_xmin``) closes that gap: every event
a later read can reveal belongs to a transaction newer than all events already returned.
"""

from __future__ import annotations

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import Session

from portal.core.models import Event


def ordered_after(session: Session, stmt: Select[Event], marker: int | None) -> Select[Event]:
    """``stmt`` restricted to events after ``marker`` and ordered as they committed."""
    if session.get_bind().dialect.name != "postgresql":
        if marker is not None:
            stmt = stmt.where(Event.id > marker)
        return stmt.order_by(Event.id)
    horizon = select(func.txid_snapshot_xmin(func.txid_current_snapshot())).scalar_subquery()
    stmt = stmt.where(Event.txid < horizon)
    if marker is not None:
        last = session.execute(select(Event.txid, Event.id).where(Event.id == marker)).first()
        if last is not None:
            stmt = stmt.where(tuple_(Event.txid, Event.id) > tuple_(last[0], last[1]))
        else:
            stmt = stmt.where(Event.id > marker)
    return stmt.order_by(Event.txid, Event.id)
