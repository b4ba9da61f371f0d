"""/v1/aggregates: admin-defined node groups — zones, racks, tenant-restricted pools."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from portal.api.aggregates.schemas import (
    AggregateCreate,
    AggregateList,
    AggregateListArgs,
    AggregateOut,
    AggregateUpdate,
)
from portal.api.auth import admin_only, authenticate, principal
from portal.api.common import Blueprint, tx
from portal.api.pagination import page
from portal.core.models import Aggregate
from portal.services import placement
from portal.services.lookup import get_or_404

blp = Blueprint(
    "aggregates", __name__, url_prefix="/v1", description="Node aggregates and zones (admin)"
)
blp.before_request(authenticate)


@blp.route("/aggregates")
class Aggregates(MethodView):
    @admin_only
    @blp.arguments(AggregateListArgs, location="query")
    @blp.response(200, AggregateList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List aggregates."""
        stmt = select(Aggregate)
        if "availability_zone" in args:
            stmt = stmt.where(Aggregate.availability_zone == args["availability_zone"])
        with tx() as s:
            items, next_url = page(s, stmt, Aggregate, args, ("created_at", "name"))
            return {
                "aggregates": [placement.aggregate_doc(s, a) for a in items],
                "next": next_url,
            }

    @admin_only
    @blp.arguments(AggregateCreate)
    @blp.response(201, AggregateOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Create an aggregate, optionally with its nodes and allowed projects."""
        with tx() as s:
            agg = placement.create_aggregate(s, data, principal())
            return placement.aggregate_doc(s, agg), 201, {"Location": f"/v1/aggregates/{agg.id}"}


@blp.route("/aggregates/<aggregate_id>")
class AggregateItem(MethodView):
    @admin_only
    @blp.response(200, AggregateOut)
    def get(self, aggregate_id: str) -> dict[str, Any]:
        """Show an aggregate with its nodes and projects."""
        with tx() as s:
            return placement.aggregate_doc(s, get_or_404(s, Aggregate, aggregate_id, "aggregate"))

    @admin_only
    @blp.arguments(AggregateUpdate)
    @blp.response(200, AggregateOut)
    def patch(self, data: dict[str, Any], aggregate_id: str) -> dict[str, Any]:
        """Change fields; ``nodes`` and ``projects``, when given, replace the lists."""
        with tx() as s:
            agg = get_or_404(s, Aggregate, aggregate_id, "aggregate")
            return placement.aggregate_doc(s, placement.update_aggregate(s, agg, data, principal()))

    @admin_only
    @blp.response(204)
    def delete(self, aggregate_id: str) -> None:
        """Delete an aggregate (its nodes stay, outside it)."""
        with tx() as s:
            placement.delete_aggregate(
                s, get_or_404(s, Aggregate, aggregate_id, "aggregate"), principal()
            )
