"""/v1/flavors: admins publish, tenants see public flavors and those shared with them."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from portal.api.auth import admin_only, authenticate, principal
from portal.api.common import Blueprint, ctx, tx
from portal.api.flavors.schemas import (
    AccessBody,
    AccessList,
    CapacityOut,
    FlavorCreate,
    FlavorList,
    FlavorListArgs,
    FlavorOut,
    FlavorUpdate,
)
from portal.api.pagination import page
from portal.core.errors import Invalid
from portal.core.models import Flavor
from portal.services import capacity
from portal.services import flavors as svc
from tenants.models import Project

blp = Blueprint("flavors", __name__, url_prefix="/v1", description="Flavors")
blp.before_request(authenticate)


@blp.route("/flavors")
class Flavors(MethodView):
    @blp.arguments(FlavorListArgs, location="query")
    @blp.response(200, FlavorList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the flavors the caller may use."""
        stmt = svc.visible(principal())
        for key in ("resource_class", "is_public"):
            if key in args:
                stmt = stmt.where(getattr(Flavor, key) == args[key])
        if "min_vcpus" in args:
            stmt = stmt.where(Flavor.vcpus >= args["min_vcpus"])
        if "min_ram_mb" in args:
            stmt = stmt.where(Flavor.ram_mb >= args["min_ram_mb"])
        with tx() as s:
            items, next_url = page(
                s,
                stmt,
                Flavor,
                args,
                ("created_at", "name", "vcpus", "ram_mb"),
                scope=svc.visible(principal()),
            )
            return {"flavors": items, "next": next_url}

    @admin_only
    @blp.arguments(FlavorCreate)
    @blp.response(201, FlavorOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Publish a flavor."""
        with tx() as s:
            flavor = svc.create(s, data, principal())
            return flavor, 201, {"Location": f"/v1/flavors/{flavor.id}"}


@blp.route("/flavors/<ident>")
class FlavorItem(MethodView):
    @blp.response(200, FlavorOut)
    def get(self, ident: str) -> Flavor:
        """Show a flavor, by id or name."""
        with tx() as s:
            return svc.get_visible(s, ident, principal())

    @admin_only
    @blp.arguments(FlavorUpdate)
    @blp.response(200, FlavorOut)
    def patch(self, data: dict[str, Any], ident: str) -> Flavor:
        """Change a flavor's description, extra specs or disabled flag."""
        with tx() as s:
            return svc.update(s, svc.get_visible(s, ident, principal()), data, principal())

    @admin_only
    @blp.response(204)
    def delete(self, ident: str) -> None:
        """Delete a flavor no live instance uses."""
        with tx() as s:
            svc.delete(s, svc.get_visible(s, ident, principal()), principal())


@blp.route("/flavors/<ident>/access")
class FlavorAccess(MethodView):
    @admin_only
    @blp.response(200, AccessList)
    def get(self, ident: str) -> dict[str, Any]:
        """Projects allowed to use a private flavor."""
        with tx() as s:
            return {"projects": svc.access_list(s, svc.get_visible(s, ident, principal()))}

    @admin_only
    @blp.arguments(AccessBody)
    @blp.response(200, AccessList)
    def post(self, body: dict[str, Any], ident: str) -> dict[str, Any]:
        """Grant a project access to a private flavor."""
        with tx() as s:
            flavor = svc.get_visible(s, ident, principal())
            if s.get(Project, body["project_id"]) is None:
                raise Invalid(f"project '{body['project_id']}' not found", field="project_id")
            svc.add_access(s, flavor, body["project_id"], principal())
            s.flush()
            return {"projects": svc.access_list(s, flavor)}


@blp.route("/flavors/<ident>/access/<project_id>")
class FlavorAccessItem(MethodView):
    @admin_only
    @blp.response(204)
    def delete(self, ident: str, project_id: str) -> None:
        """Revoke a project's access."""
        with tx() as s:
            svc.remove_access(s, svc.get_visible(s, ident, principal()), project_id, principal())


@blp.route("/flavors/<ident>/capacity")
class FlavorCapacity(MethodView):
    @blp.response(200, CapacityOut)
    def get(self, ident: str) -> dict[str, Any]:
        """How many servers of this flavor could be placed now.

        Tenants: nodes that fit and are theirs to use, capped by their remaining quota.
        Admins: every node that could host it, with a breakdown by availability zone.
        """
        with tx() as s:
            flavor = svc.get_visible(s, ident, principal())
            return capacity.for_flavor(ctx(), s, flavor, principal())
