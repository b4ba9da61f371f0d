"""/v1/instances: a tenant's bare-metal servers."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from portal.api.auth import authenticate, principal, writer
from portal.api.common import Blueprint, ctx, tx
from portal.api.instances.schemas import InstanceCreate, InstanceList, InstanceListArgs, InstanceOut
from portal.api.pagination import page
from portal.core.models import Instance
from portal.services import instances as svc

blp = Blueprint("instances", __name__, url_prefix="/v1", description="Bare-metal servers")
blp.before_request(authenticate)


@blp.route("/instances")
class Instances(MethodView):
    @blp.arguments(InstanceListArgs, location="query")
    @blp.response(200, InstanceList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the caller's instances (admins: all)."""
        stmt = svc.visible(principal())
        if "status" in args:
            stmt = stmt.where(Instance.status == args["status"])
        elif not args["include_deleted"]:
            stmt = stmt.where(Instance.status != "DELETED")
        if "name" in args:
            stmt = stmt.where(Instance.name == args["name"])
        if "project_id" in args and principal().is_admin:
            stmt = stmt.where(Instance.project_id == args["project_id"])
        with tx() as s:
            items, next_url = page(
                s,
                stmt,
                Instance,
                args,
                ("created_at", "name", "status"),
                scope=svc.visible(principal()),
            )
            return {"instances": items, "next": next_url}

    @writer
    @blp.arguments(InstanceCreate)
    @blp.response(202, InstanceOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Create a server from a flavor and an image; poll its Location until ACTIVE."""
        with tx() as s:
            inst = svc.create(ctx(), s, data, principal())
            return inst, 202, {"Location": f"/v1/instances/{inst.id}"}


@blp.route("/instances/<instance_id>")
class InstanceItem(MethodView):
    @blp.response(200, InstanceOut)
    def get(self, instance_id: str) -> Instance:
        """Show a server: status, progress, fault, addresses."""
        with tx() as s:
            return svc.get_visible(s, instance_id, principal())

    @writer
    @blp.response(202, InstanceOut)
    def delete(self, instance_id: str) -> Any:
        """Delete a server: its node is wiped and returned to the pool."""
        with tx() as s:
            inst = svc.delete(ctx(), s, svc.get_visible(s, instance_id, principal()), principal())
            return inst, 202, {"Location": f"/v1/instances/{inst.id}"}
