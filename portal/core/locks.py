"""Node locks (Ironic's "reservation"): a conditional UPDATE, so only one holder at a time."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from portal.core.db import utcnow
from portal.core.models import Node


class NodeLocked(Exception):
    def __init__(self, node_id: str) -> None:
        super().__init__(f"node {node_id} is locked by another operation")
        self.node_id = node_id


def acquire(session: Session, node_id: str, holder: str) -> bool:
    """Take the lock (re-entrant for the same holder)."""
    result = session.execute(
        update(Node)
        .where(Node.id == node_id, (Node.reservation.is_(None)) | (Node.reservation == holder))
        .values(reservation=holder, reserved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def acquire_and_read(session: Session, node_id: str, holder: str) -> Node | None:
    """Take the lock (as :func:`acquire`) and read the node, in one statement (``UPDATE
    ... RETURNING``): the node as the lock left it, loaded into ``session``; None if
    another holder has it or there is no such node."""
    return session.scalars(
        update(Node)
        .where(Node.id == node_id, (Node.reservation.is_(None)) | (Node.reservation == holder))
        .values(reservation=holder, reserved_at=utcnow())
        .returning(Node),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).one_or_none()


def release(session: Session, node_id: str, holder: str) -> None:
    session.execute(
        update(Node)
        .where(Node.id == node_id, Node.reservation == holder)
        .values(reservation=None, reserved_at=None)
        .execution_options(synchronize_session=False)
    )


def release_loaded(node: Node, holder: str) -> None:
    """Release through a node loaded in the caller's transaction (while holding the lock):
    the change goes out with the node's other changes, in the same UPDATE."""
    if node.reservation == holder:
        node.reservation = None
        node.reserved_at = None
