"""limit + marker pagination with sorting, shared by every list endpoint."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from marshmallow import Schema, fields, validate
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from portal.api.fields import Int64
from portal.core.errors import Invalid, NotFound

MAX_LIMIT = 1000


class ListArgs(Schema):
    limit = Int64(load_default=100, min=1, max=MAX_LIMIT)
    marker = fields.String(metadata={"description": "id of the last item of the previous page"})
    sort_key = fields.String()
    sort_dir = fields.String(load_default="asc", validate=validate.OneOf(["asc", "desc"]))


def sort_keys(*keys: str) -> fields.String:
    """A list's ``sort_key`` argument: one of ``keys`` (the OpenAPI document lists them)."""
    return fields.String(validate=validate.OneOf(keys))


def page(
    s: Session,
    stmt: Select[Any],
    model: Any,
    args: dict[str, Any],
    sort_keys: tuple[str, ...],
    default_sort: str = "created_at",
    rows: bool = False,
    scope: Select[Any] | None = None,
) -> tuple[list[Any], str | None]:
    """One page of ``stmt``; returns the items and the URL of the next page (or None).

    With ``rows=True`` ``stmt`` selects columns and the items are plain rows (each with an
    ``id``), not ORM objects: much cheaper for large pages that are serialized directly.
    ``scope`` is what the caller may see at all: a marker outside it is "not found", so
    markers cannot probe other tenants' ids (list filters do not apply to the marker, so
    an item that changed state while paging still works as a marker).
    """
    key = args.get("sort_key") or default_sort
    if key not in sort_keys:
        raise Invalid(f"cannot sort by '{key}'; allowed: {', '.join(sort_keys)}", field="sort_key")
    col, pk = getattr(model, key), model.id
    desc = args.get("sort_dir") == "desc"
    limit = args["limit"]
    if marker := args.get("marker"):
        lookup = scope.with_only_columns(col) if scope is not None else select(col)
        row = s.execute(lookup.where(pk == marker)).first()
        if row is None:
            detail = f"marker '{marker}' not found"
            raise NotFound(detail, errors=[{"field": "marker", "message": detail}])
        value = row[0]
        after = (col < value) if desc else (col > value)
        same = and_(col == value, (pk < marker) if desc else (pk > marker))
        stmt = stmt.where(or_(after, same) if value is not None else or_(col.is_not(None), same))
    order = (col.desc(), pk.desc()) if desc else (col.asc(), pk.asc())
    result = s.execute(stmt.order_by(*order).limit(limit + 1))
    items = list(result.all() if rows else result.scalars())
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    query = {k: v for k, v in request.args.items() if k != "marker"}
    next_url = url_for(
        request.endpoint or "",
        **(request.view_args or {}),
        **query,
        marker=items[-1].id,
        _external=True,
    )
    return items, next_url
