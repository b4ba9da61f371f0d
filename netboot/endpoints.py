"""Boot endpoints: what a netbooting machine fetches. Unauthenticated by design (firmware
cannot send credentials), so they reveal nothing without the operation's boot token.

- ``/v1/boot/<boot token>.ipxe``: the boot script of the operation that token opened
  (the deploy ramdisk); once the operation ends, ``exit``;
- anything else (a MAC, an old token): ``exit``, i.e. boot from the next device (disk).
- ``/v1/boot/artefacts/<name>``: the deploy kernel and initramfs, with Range support.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

from netboot import artefacts
from netboot.render import BootTarget, ipxe_script

ARTEFACTS = ("deploy.kernel", "deploy.initramfs")


def make_blueprint(netboot_root: Callable[[], Path]) -> Blueprint:
    bp = Blueprint("boot", __name__, url_prefix="/v1/boot")

    @bp.get("/<token>.ipxe")
    def ipxe(token: str) -> Response:
        script = artefacts.script_for(netboot_root(), token)
        return Response(script or ipxe_script(BootTarget(kind="none")), mimetype="text/plain")

    @bp.get("/artefacts/<name>")
    def artefact(name: str) -> Response:
        if name not in ARTEFACTS:
            abort(404)
        # conditional=True: Range requests and If-Modified-Since, as iPXE and wget use them.
        return send_from_directory(netboot_root() / "artefacts", name, conditional=True)

    return bp
