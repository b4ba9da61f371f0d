"""/v1/switches (admin only): the switches node ports are wired to."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from portal.api.auth import admin_only, authenticate, principal
from portal.api.common import Blueprint, ctx, tx
from portal.api.pagination import page
from portal.api.switches.schemas import (
    SwitchCreate,
    SwitchList,
    SwitchListArgs,
    SwitchOut,
    SwitchPortList,
    SwitchUpdate,
)
from portal.core.models import Switch
from portal.services import switches as svc

blp = Blueprint("switches", __name__, url_prefix="/v1", description="Managed switches (admin)")
blp.before_request(authenticate)


@blp.route("/switches")
class Switches(MethodView):
    @admin_only
    @blp.arguments(SwitchListArgs, location="query")
    @blp.response(200, SwitchList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List switches."""
        stmt = select(Switch)
        for key in ("driver", "maintenance"):
            if key in args:
                stmt = stmt.where(getattr(Switch, key) == args[key])
        with tx() as s:
            items, next_url = page(s, stmt, Switch, args, ("created_at", "name"))
            return {"switches": items, "next": next_url}

    @admin_only
    @blp.arguments(SwitchCreate)
    @blp.response(201, SwitchOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Onboard a switch: driver, connection, credentials (write-only), settings."""
        with tx() as s:
            switch = svc.create_switch(ctx(), s, data, principal())
            return switch, 201, {"Location": f"/v1/switches/{switch.id}"}


@blp.route("/switches/<ident>")
class SwitchItem(MethodView):
    @admin_only
    @blp.response(200, SwitchOut)
    def get(self, ident: str) -> Switch:
        """Show a switch, by uuid or name."""
        with tx() as s:
            return svc.switch_by_ident(s, ident)

    @admin_only
    @blp.arguments(SwitchUpdate)
    @blp.response(200, SwitchOut)
    def patch(self, data: dict[str, Any], ident: str) -> Switch:
        """Change fields (a merge patch: ``settings`` and ``credentials`` merge key by key,
        null removes a key, a credential sent back as ``******`` is kept)."""
        with tx() as s:
            switch = svc.switch_by_ident(s, ident, for_update=True)
            return svc.update_switch(ctx(), s, switch, data, principal())

    @admin_only
    @blp.response(204)
    def delete(self, ident: str) -> None:
        """Delete a switch no node port is wired to (409 names the ports that are)."""
        with tx() as s:
            svc.delete_switch(s, svc.switch_by_ident(s, ident, for_update=True), principal())


@blp.route("/switches/<ident>/ports")
class SwitchPorts(MethodView):
    @admin_only
    @blp.response(200, SwitchPortList)
    def get(self, ident: str) -> dict[str, Any]:
        """The managed ports of a switch: desired against observed state, applied or
        pending, drift and the last error."""
        with tx() as s:
            return {"ports": svc.ports_view(s, svc.switch_by_ident(s, ident))}
