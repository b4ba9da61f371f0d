"""/v1/images: metadata plus streamed upload and download of the bytes."""

from __future__ import annotations

from typing import Any

from flask import Response, request, send_file
from flask.views import MethodView

from portal.api.auth import authenticate, principal, writer
from portal.api.bodies import UnsupportedMediaType
from portal.api.common import Blueprint, ctx, tx
from portal.api.images.schemas import (
    ImageCreate,
    ImageList,
    ImageListArgs,
    ImageOut,
    ImageUpdate,
    MemberBody,
)
from portal.api.pagination import page
from portal.core.errors import Conflict, Invalid
from portal.core.models import Image
from portal.services import images as svc
from tenants.models import Project

blp = Blueprint("images", __name__, url_prefix="/v1", description="Images (Glance-like)")
blp.before_request(authenticate)


@blp.route("/images")
class Images(MethodView):
    @blp.arguments(ImageListArgs, location="query")
    @blp.response(200, ImageList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the images the caller can see."""
        stmt = svc.visible(principal())
        for key in ("name", "visibility", "status", "owner"):
            if key in args:
                stmt = stmt.where(getattr(Image, key) == args[key])
        with tx() as s:
            items, next_url = page(
                s, stmt, Image, args, ("created_at", "name", "size"), scope=svc.visible(principal())
            )
            return {"images": items, "next": next_url}

    @writer
    @blp.arguments(ImageCreate)
    @blp.response(201, ImageOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Register an image (status ``queued``); then PUT its data to ``file``."""
        with tx() as s:
            if "owner" in data and (
                not principal().is_admin or s.get(Project, data["owner"]) is None
            ):
                raise Invalid(
                    "owner must be an existing project and is for admins only", field="owner"
                )
            image = svc.create(s, data, principal())
            return image, 201, {"Location": f"/v1/images/{image.id}"}


@blp.route("/images/<image_id>")
class ImageItem(MethodView):
    @blp.response(200, ImageOut)
    def get(self, image_id: str) -> Image:
        """Show an image, by id or name."""
        with tx() as s:
            return svc.get_visible(s, image_id, principal())

    @writer
    @blp.arguments(ImageUpdate)
    @blp.response(200, ImageOut)
    def patch(self, data: dict[str, Any], image_id: str) -> Image:
        """Rename, change visibility or protection."""
        with tx() as s:
            return svc.update(s, svc.get_visible(s, image_id, principal()), data, principal())

    @writer
    @blp.response(204)
    def delete(self, image_id: str) -> None:
        """Delete an image not used by a live instance."""
        with tx() as s:
            svc.delete(ctx(), s, svc.get_visible(s, image_id, principal()), principal())


@blp.route("/images/<image_id>/file")
class ImageFile(MethodView):
    @writer
    @blp.response(200, ImageOut)
    @blp.doc(
        requestBody={
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    )
    def put(self, image_id: str) -> Image:
        """Upload the image's bytes (streamed; sha256 verified if given at create)."""
        if request.mimetype != "application/octet-stream":
            raise UnsupportedMediaType(request.mimetype or None, "application/octet-stream")
        return svc.upload(ctx(), image_id, request.stream, principal())  # type: ignore[arg-type]

    @blp.response(200)
    @blp.doc(responses={"200": {"content": {"application/octet-stream": {}}}, 409: "CONFLICT"})
    def get(self, image_id: str) -> Response:
        """Download the image's bytes (streamed, with Range support)."""
        with tx() as s:
            image = svc.get_visible(s, image_id, principal())
        path = ctx().store.path(image.id)
        if image.status != "active" or path is None:
            raise Conflict(f"image is '{image.status}': no data to download", state=image.status)
        resp = send_file(
            path,
            mimetype="application/octet-stream",
            conditional=True,
            etag=image.checksum_sha256 or False,
            download_name=f"{image.id}.{image.disk_format}",
        )
        return resp


@blp.route("/images/<image_id>/members")
class ImageMembers(MethodView):
    @writer
    @blp.arguments(MemberBody)
    @blp.response(204)
    def post(self, body: dict[str, Any], image_id: str) -> None:
        """Share an image (visibility ``shared``) with another project."""
        with tx() as s:
            svc.add_member(
                s, svc.get_visible(s, image_id, principal()), body["project_id"], principal()
            )
