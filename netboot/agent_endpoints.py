"""HTTP endpoints of the agent protocol (docs/deploy.md): lookup, heartbeat, results, and
the image and config drive the agent writes. Authenticated by the agent token, never by a
user token: the ramdisk has none.

``?format=env`` answers ``KEY=value`` lines (nested keys joined with ``_``, values
percent-encoded) for the POSIX-shell agent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request, send_file
from sqlalchemy.orm import Session

from netboot import agent, configdrive_source
from portal.core.errors import Invalid, NotFound
from portal.core.imagestore import ImageStore
from portal.core.models import Image, Instance, Node

TOKEN_HEADER = "X-Agent-Token"


def flatten(doc: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from flatten(value, f"{prefix}_{key}" if prefix else str(key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from flatten(value, f"{prefix}_{i}")
    elif doc is None:
        yield prefix, ""
    elif isinstance(doc, bool):
        yield prefix, "true" if doc else "false"
    else:
        yield prefix, str(doc)


def answer(doc: dict[str, Any], status: int = 200) -> Response:
    if request.args.get("format") == "env":
        body = "".join(f"{k}={quote(v, safe='')}\n" for k, v in flatten(doc))
        return Response(body, status=status, mimetype="text/plain")
    resp = jsonify(doc)
    resp.status_code = status
    return resp


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", field="body")
    return data


def make_blueprint(
    session: Callable[[], AbstractContextManager[Session]],
    store: Callable[[], ImageStore],
    resume: Callable[[Session, Node], None],
) -> Blueprint:
    """``session``: a committing session scope; ``resume(s, node)``: enqueue the job that
    resumes the node's plan once ``s`` commits."""
    bp = Blueprint("agent", __name__, url_prefix="/v1/agent")

    def authed(s: Session, node_id: str | None) -> tuple[Node, Any]:
        return agent.authenticate(s, node_id, request.headers.get(TOKEN_HEADER))

    @bp.post("/lookup")
    def lookup() -> Response:
        body = _body()
        macs = body.get("macs")
        if not isinstance(macs, list):
            raise Invalid("macs must be a list of MAC addresses", field="macs")
        with session() as s:
            found = agent.lookup(s, macs, body.get("boot_token"))
        return answer(
            {
                "node_id": found.node_id,
                "token": found.token,
                "heartbeat_interval": found.heartbeat_interval,
            }
        )

    @bp.post("/heartbeat")
    def heartbeat() -> Response:
        body = _body()
        with session() as s:
            node, row = authed(s, body.get("node_id"))
            return answer(agent.heartbeat(s, node, row, body))

    @bp.post("/commands/<command_id>/result")
    def result(command_id: str) -> Response:
        body = _body()
        with session() as s:
            node, row = authed(s, body.get("node_id"))
            if agent.record_result(s, node, row, command_id, body):
                resume(s, node)
        return answer({"accepted": True}, 202)

    @bp.get("/image")
    def image() -> Response:
        with session() as s:
            node, _ = authed(s, request.args.get("node_id"))
            inst = s.get(Instance, node.instance_id) if node.instance_id else None
            img = s.get(Image, inst.image_id) if inst else None
            if img is None or img.status != "active":
                raise NotFound("this node has no instance image to write")
            image_id, fmt = img.id, img.disk_format
        # The agent writes raw bytes: other formats were converted by the deploy's
        # prepare_image step (workers.imageconvert), into the store's raw variant.
        raw = store().variant_path(image_id, "raw") if fmt != "raw" else store().path(image_id)
        path = raw if raw is not None and raw.exists() else None
        if path is None:
            raise NotFound(f"the image's {'raw copy' if fmt != 'raw' else 'bytes'} is missing")
        # conditional=True: Range requests, so an interrupted download can resume.
        return send_file(path, mimetype="application/octet-stream", conditional=True)

    @bp.get("/configdrive")
    def configdrive() -> Response:
        with session() as s:
            node, _ = authed(s, request.args.get("node_id"))
            data = configdrive_source.image_for(s, node)
        return Response(data, mimetype="application/octet-stream")

    return bp
