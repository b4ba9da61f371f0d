"""Boot endpoints: what a netbooting machine fetches. Unauthenticated by design (firmware
cannot send tokens), so they reveal nothing but a boot script for a known MAC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response, abort

from netboot import artefacts
from netboot.render import MAC_RE, BootTarget, ipxe_script


def make_blueprint(
    netboot_root: Callable[[], Path], node_for_mac: Callable[[str], str | None]
) -> Blueprint:
    bp = Blueprint("boot", __name__, url_prefix="/v1/boot")

    @bp.get("/<mac>.ipxe")
    def ipxe(mac: str) -> Response:
        mac = mac.lower().replace("-", ":")
        if not MAC_RE.match(mac):
            abort(404)
        node_id = node_for_mac(mac)
        script = None
        if node_id is not None:
            path = artefacts.node_dir(netboot_root(), node_id) / "boot.ipxe"
            if path.exists():
                script = path.read_text()
        # No artefacts: the node should boot from its disk (or it is unknown: exit).
        script = script or ipxe_script(BootTarget(kind="local" if node_id else "none"))
        return Response(script, mimetype="text/plain")

    return bp
