"""Recording events into the outbox, always inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.core.models import Event

SYSTEM = "system"


def record(
    session: Session,
    type: str,
    resource_type: str,
    resource_id: str,
    *,
    actor: str = SYSTEM,
    project_id: str | None = None,
    **payload: Any,
) -> Event:
    """Add an event to ``session``; it is committed (or rolled back) with the change it records."""
    event = new(type, resource_type, resource_id, actor=actor, project_id=project_id, **payload)
    session.add(event)
    return event


def new(
    type: str,
    resource_type: str,
    resource_id: str,
    *,
    actor: str = SYSTEM,
    project_id: str | None = None,
    **payload: Any,
) -> Event:
    """An event not yet in any session, for a caller that writes it with its change in
    one go (``portal.core.db.insert_now``); the same transaction rule applies."""
    return Event(
        type=type,
        resource_type=resource_type,
        resource_id=resource_id,
        project_id=project_id,
        actor=actor,
        payload=payload,
    )
