"""Finding resources the caller may see: another tenant's resource is a 404, never a 403."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core.errors import NotFound
from portal.core.models import Node

T = TypeVar("T")


def get_or_404(session: Session, model: type[T], ident: str, what: str, **opts: Any) -> T:
    obj = session.get(model, ident, **opts)
    if obj is None:
        raise NotFound(f"{what} '{ident}' not found")
    return obj


def node_by_ident(session: Session, ident: str, for_update: bool = False) -> Node:
    """A node by uuid or by name."""
    stmt = select(Node).where((Node.id == ident) | (Node.name == ident))
    if for_update:
        stmt = stmt.with_for_update()
    node = session.scalars(stmt).first()
    if node is None:
        raise NotFound(f"node '{ident}' not found")
    return node
