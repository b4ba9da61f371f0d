"""Claiming a node: an atomic conditional UPDATE, correct on SQLite and PostgreSQL alike.

Two workers that pick the same candidate both issue the UPDATE; the database lets exactly
one match its WHERE clause, and the loser moves on to its next candidate.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from portal.core.db import utcnow
from portal.core.models import Node
from portal.core.states import AVAILABLE


def claim(session: Session, node_id: str, instance_id: str, holder: str) -> bool:
    """Reserve ``node_id`` for ``instance_id`` and lock it for ``holder``; False if taken."""
    result = session.execute(
        update(Node)
        .where(
            Node.id == node_id,
            Node.provision_state == AVAILABLE,
            Node.maintenance.is_(False),
            Node.reservation.is_(None),
            Node.instance_id.is_(None),
        )
        .values(instance_id=instance_id, reservation=holder, reserved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]
