"""Finding resources the caller may see: another tenant's resource is a 404, never a 403.

One rule for references (docs/reliability.md): a resource named in the URL that does
not exist, or is not visible, is a 404; one named in a request body (or a query filter) is a
422 naming the field, since the URL's resource does exist. A name that matches several
resources is a 409 listing their ids (``matches``), wherever it is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.models import Node

T = TypeVar("T")


class Ambiguous(Conflict):
    """A name that matches more than one resource: use one of ``matches`` (ids)."""

    def __init__(self, what: str, name: str, ids: list[str]) -> None:
        super().__init__(
            f"{len(ids)} {what}s are named '{name}': use an id ({', '.join(ids)})", matches=ids
        )


@contextmanager
def referenced(field: str) -> Iterator[None]:
    """Lookups of resources a request body names: not found is a 422 naming ``field``."""
    try:
        yield
    except NotFound as exc:
        raise Invalid(exc.detail, field=field) from None
    except Ambiguous as exc:
        exc.extra["errors"] = [{"field": field, "message": exc.detail}]
        raise


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
