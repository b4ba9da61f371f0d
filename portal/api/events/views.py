"""/v1/events: the lifecycle history (admins: all; tenants: their own projects')."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from flask.views import MethodView
from marshmallow import Schema, fields
from sqlalchemy import select

from portal.api.auth import authenticate, principal
from portal.api.common import Blueprint, tx
from portal.api.fields import Int64, NonNegative
from portal.core import outbox
from portal.core.models import Event

blp = Blueprint("events", __name__, url_prefix="/v1", description="Events (outbox)")
blp.before_request(authenticate)


class EventArgs(Schema):
    limit = Int64(load_default=100, min=1, max=1000)
    marker = NonNegative(
        metadata={"description": "id of the last event you processed; events come in commit order"}
    )
    type = fields.String()
    resource_type = fields.String()
    resource_id = fields.String()
    project_id = fields.String()
    since = fields.AwareDateTime()


# Payload keys only admins see: which physical node serves a tenant is the operator's business.
ADMIN_ONLY_PAYLOAD = frozenset({"node_id", "details", "reservation"})


class PayloadField(fields.Field):
    def _serialize(self, value: Any, attr: str | None, obj: Any, **kw: Any) -> Any:
        if principal().is_admin:
            return value
        return {k: v for k, v in (value or {}).items() if k not in ADMIN_ONLY_PAYLOAD}


class EventOut(Schema):
    id = fields.Integer()
    type = fields.String()
    resource_type = fields.String()
    resource_id = fields.String()
    project_id = fields.String(allow_none=True)
    actor = fields.String()
    payload = PayloadField()
    created_at = fields.DateTime()


class EventList(Schema):
    events = fields.List(fields.Nested(EventOut))
    next = fields.String(allow_none=True)


@blp.route("/events")
class Events(MethodView):
    @blp.arguments(EventArgs, location="query")
    @blp.response(200, EventList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Events in the order they happened; page with ``marker`` (the last id seen)."""
        stmt = select(Event)
        if not principal().is_admin:
            stmt = stmt.where(Event.project_id == principal().project_id)
        elif "project_id" in args:
            stmt = stmt.where(Event.project_id == args["project_id"])
        for key in ("type", "resource_type", "resource_id"):
            if key in args:
                stmt = stmt.where(getattr(Event, key) == args[key])
        if "since" in args:
            stmt = stmt.where(Event.created_at >= args["since"])
        with tx() as s:
            stmt = outbox.ordered_after(s, stmt, args.get("marker"))
            items = list(s.scalars(stmt.limit(args["limit"] + 1)))
        next_url = None
        if len(items) > args["limit"]:
            items = items[: args["limit"]]
            query = {k: v for k, v in request.args.items() if k != "marker"}
            next_url = url_for("events.Events", **query, marker=items[-1].id, _external=True)
        return {"events": items, "next": next_url}
