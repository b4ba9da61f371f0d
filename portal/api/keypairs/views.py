"""/v1/keypairs: the caller's SSH public keys."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from portal.api.auth import authenticate, principal, writer
from portal.api.common import Blueprint, tx
from portal.api.keypairs.schemas import KeypairCreate, KeypairList, KeypairListArgs, KeypairOut
from portal.api.pagination import page
from portal.core import events
from portal.core.errors import NotFound
from portal.core.models import Keypair
from portal.services import keypairs as svc

blp = Blueprint("keypairs", __name__, url_prefix="/v1", description="SSH keypairs")
blp.before_request(authenticate)


def _mine(s: Any, name: str) -> Keypair:
    kp = s.scalars(
        select(Keypair).where(Keypair.user_id == principal().user_id, Keypair.name == name)
    ).first()
    if kp is None:
        raise NotFound(f"keypair '{name}' not found")
    return kp


@blp.route("/keypairs")
class Keypairs(MethodView):
    @blp.arguments(KeypairListArgs, location="query")
    @blp.response(200, KeypairList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the caller's keypairs."""
        stmt = select(Keypair).where(Keypair.user_id == principal().user_id)
        if "name" in args:
            stmt = stmt.where(Keypair.name == args["name"])
        with tx() as s:
            items, next_url = page(
                s,
                stmt,
                Keypair,
                args,
                ("created_at", "name"),
                scope=select(Keypair).where(Keypair.user_id == principal().user_id),
            )
            return {"keypairs": items, "next": next_url}

    @writer
    @blp.arguments(KeypairCreate)
    @blp.response(201, KeypairOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Import an OpenSSH public key."""
        with tx() as s:
            kp = svc.create(s, data["name"], data["public_key"], principal())
            return kp, 201, {"Location": f"/v1/keypairs/{kp.name}"}


@blp.route("/keypairs/<name>")
class KeypairItem(MethodView):
    @blp.response(200, KeypairOut)
    def get(self, name: str) -> Keypair:
        """Show a keypair."""
        with tx() as s:
            return _mine(s, name)

    @writer
    @blp.response(204)
    def delete(self, name: str) -> None:
        """Delete a keypair (running servers keep the key they booted with)."""
        with tx() as s:
            kp = _mine(s, name)
            events.record(
                s,
                "keypair.deleted",
                "keypair",
                kp.id,
                actor=principal().actor,
                project_id=kp.project_id,
                name=kp.name,
            )
            s.delete(kp)
