"""/v1/server-groups: a tenant's affinity and anti-affinity groups."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from portal.api.auth import authenticate, principal, writer
from portal.api.common import Blueprint, tx
from portal.api.pagination import page
from portal.api.server_groups.schemas import (
    ServerGroupCreate,
    ServerGroupList,
    ServerGroupListArgs,
    ServerGroupOut,
)
from portal.core.models import ServerGroup
from portal.services import placement

blp = Blueprint(
    "server_groups", __name__, url_prefix="/v1", description="Server groups (affinity policies)"
)
blp.before_request(authenticate)


@blp.route("/server-groups")
class ServerGroups(MethodView):
    @blp.arguments(ServerGroupListArgs, location="query")
    @blp.response(200, ServerGroupList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the caller's server groups (admins: all)."""
        stmt = placement.visible_groups(principal())
        if "name" in args:
            stmt = stmt.where(ServerGroup.name == args["name"])
        with tx() as s:
            items, next_url = page(
                s,
                stmt,
                ServerGroup,
                args,
                ("created_at", "name"),
                scope=placement.visible_groups(principal()),
            )
            return {
                "server_groups": [placement.group_doc(s, g) for g in items],
                "next": next_url,
            }

    @writer
    @blp.arguments(ServerGroupCreate)
    @blp.response(201, ServerGroupOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Create a group; pass its id as ``server_group`` when creating servers."""
        with tx() as s:
            group = placement.create_group(s, data, principal())
            return placement.group_doc(s, group), 201, {"Location": f"/v1/server-groups/{group.id}"}


@blp.route("/server-groups/<group_id>")
class ServerGroupItem(MethodView):
    @blp.response(200, ServerGroupOut)
    def get(self, group_id: str) -> dict[str, Any]:
        """Show a group and its live members."""
        with tx() as s:
            return placement.group_doc(s, placement.get_group(s, group_id, principal()))

    @writer
    @blp.response(204)
    def delete(self, group_id: str) -> None:
        """Delete an empty group (409 while it has servers)."""
        with tx() as s:
            placement.delete_group(s, placement.get_group(s, group_id, principal()), principal())
