"""Images: metadata, visibility, and streamed upload/download of their bytes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from functools import cache
from typing import Any, BinaryIO

from sqlalchemy import Select, bindparam, exists, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from portal.core import events, imageformat
from portal.core.db import utcnow
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound
from portal.core.imagestore import ChecksumMismatch
from portal.core.models import Image, ImageMember, Instance
from portal.services.context import Context
from portal.services.lookup import Ambiguous
from tenants.models import Project
from tenants.principal import Principal

PROGRESS_EVERY = 10.0  # seconds between an upload's signs of life


def visible(principal: Principal) -> Select[Image]:
    return _visible(principal.project_id, admin=principal.is_admin)


def _visible(pid: Any, *, admin: bool) -> Select[Image]:
    stmt = select(Image).where(Image.status != "deleted")
    if not admin:
        stmt = stmt.where(
            or_(
                Image.visibility.in_(("public", "community")),
                Image.owner == pid,
                (Image.visibility == "shared")
                & exists().where(ImageMember.image_id == Image.id, ImageMember.project_id == pid),
            )
        )
    return stmt


@cache
def _lookup(admin: bool, by_name: bool = False) -> Select[Image]:
    """``get_visible``'s statements, built once per role (values are bound parameters)."""
    stmt = _visible(bindparam("project_id"), admin=admin)
    if by_name:
        return stmt.where(Image.name == bindparam("ident")).order_by(Image.id).limit(10)
    return stmt.where(Image.id == bindparam("ident"))


def get_visible(s: Session, ident: str, principal: Principal) -> Image:
    """An image the caller can see, by id or (as flavors) by name; a name shared by
    several visible images is :class:`Ambiguous` (409, listing their ids)."""
    params = {"ident": ident, "project_id": principal.project_id}
    image = s.scalars(_lookup(principal.is_admin), params).first()
    if image is not None:
        return image
    named = list(s.scalars(_lookup(principal.is_admin, by_name=True), params))
    if len(named) == 1:
        return named[0]
    if named:
        raise Ambiguous("image", ident, [i.id for i in named])
    raise NotFound(f"image '{ident}' not found")


def _check_owner(image: Image, principal: Principal) -> None:
    if not principal.is_admin and image.owner != principal.project_id:
        raise Forbidden("only the image's owner or an admin may change it")


def create(s: Session, data: dict[str, Any], principal: Principal) -> Image:
    if data.get("visibility") == "public" and not principal.is_admin:
        raise Forbidden("only admins may publish public images", field="visibility")
    data.setdefault("owner", principal.project_id or None)
    if not principal.is_admin:
        data["owner"] = principal.project_id
    image = Image(**data)
    s.add(image)
    s.flush()
    events.record(
        s,
        "image.created",
        "image",
        image.id,
        actor=principal.actor,
        project_id=image.owner,
        name=image.name,
        visibility=image.visibility,
    )
    return image


def update(s: Session, image: Image, changes: dict[str, Any], principal: Principal) -> Image:
    _check_owner(image, principal)
    if changes.get("visibility") == "public" and not principal.is_admin:
        raise Forbidden("only admins may publish public images", field="visibility")
    if "expected_sha256" in changes and image.status != "queued":
        raise Conflict(
            f"image is '{image.status}': the sha256 can only be changed while the image is "
            "queued (before its data is uploaded)",
            state=image.status,
            errors=[{"field": "sha256", "message": "the image's data is already uploaded"}],
        )
    for k, v in changes.items():
        setattr(image, k, v)
    events.record(
        s,
        "image.updated",
        "image",
        image.id,
        actor=principal.actor,
        project_id=image.owner,
        fields=sorted(changes),
    )
    return image


def upload(ctx: Context, image_id: str, stream: BinaryIO, principal: Principal) -> Image:
    """Stream the bytes to the store; the image becomes active only if the checksum holds.

    No transaction is open while the bytes flow (on SQLite that would hold the database's
    write lock for the whole upload): the image is claimed with a conditional update
    (queued → saving), written, then marked active, or put back to queued on failure.
    """
    with ctx.session() as s:
        image = get_visible(s, image_id, principal)
        image_id = image.id  # the caller may have named it
        _check_owner(image, principal)
        # queued, or saving with no progress for a while: its uploader's process died.
        stale = utcnow() - timedelta(seconds=ctx.settings.upload_stale_after)
        claimed = s.execute(
            sql_update(Image)
            .where(
                Image.id == image.id,
                (Image.status == "queued")
                | (
                    (Image.status == "saving")
                    & (Image.updated_at.is_(None) | (Image.updated_at < stale))
                ),
            )
            .values(status="saving", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if claimed != 1:
            raise Conflict(
                f"image is '{image.status}': data can be uploaded once, to a queued image"
                + (
                    f" (an upload that shows no progress for {ctx.settings.upload_stale_after:g}"
                    " s can be retried)"
                    if image.status == "saving"
                    else ""
                ),
                state=image.status,
            )
        expected, declared = image.expected_sha256, image.disk_format
    try:
        head = _read_head(stream, imageformat.HEADER_BYTES)
        fmt = imageformat.check(declared, head)
        body = _Prefixed(head, stream, lambda: _progress(ctx, image_id))
        stored = ctx.store.put(image_id, body, expected)
        with ctx.session() as s:
            image = s.get_one(Image, image_id)
            image.size, image.checksum_sha256, image.status = stored.size, stored.sha256, "active"
            image.virtual_size = fmt.virtual_size or stored.size
            events.record(
                s,
                "image.uploaded",
                "image",
                image.id,
                actor=principal.actor,
                project_id=image.owner,
                size=stored.size,
                sha256=stored.sha256,
            )
    except BaseException as exc:
        # Whatever went wrong (bad header, checksum, the client gone, a limit, the final
        # commit), the image goes back to queued for another upload: never stuck in saving.
        _requeue(ctx, image_id, principal, exc)
        if isinstance(exc, ChecksumMismatch):
            raise Invalid(
                str(exc), field="sha256", expected=exc.expected, actual=exc.actual
            ) from None
        if isinstance(exc, imageformat.FormatError):
            raise Invalid(str(exc), field=exc.field, declared=declared) from None
        raise
    return image


def _progress(ctx: Context, image_id: str) -> None:
    """A live upload's sign of life: bump ``updated_at`` (see ``upload_stale_after``)."""
    with ctx.session() as s:
        s.execute(
            sql_update(Image)
            .where(Image.id == image_id, Image.status == "saving")
            .values(updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def _requeue(ctx: Context, image_id: str, principal: Principal, exc: BaseException) -> None:
    ctx.store.delete(image_id)
    with ctx.session() as s:
        image = s.get_one(Image, image_id)
        image.status = "queued"
        events.record(
            s,
            "image.upload_failed",
            "image",
            image_id,
            actor=principal.actor,
            project_id=image.owner,
            error=str(exc)[:500],
        )


def _read_head(stream: BinaryIO, n: int) -> bytes:
    """The first ``n`` bytes (fewer only at the end of the data): reads may return less."""
    head = b""
    while len(head) < n and (chunk := stream.read(n - len(head))):
        head += chunk
    return head


class _Prefixed:
    """``head`` then the rest of ``stream``: the store sees the upload from its first byte.
    ``progress`` is called at most every ``PROGRESS_EVERY`` seconds while bytes flow."""

    def __init__(
        self, head: bytes, stream: BinaryIO, progress: Callable[[], None] | None = None
    ) -> None:
        self._head, self._stream, self._progress = head, stream, progress
        self._last = time.monotonic()

    def read(self, n: int = -1) -> bytes:
        if self._progress is not None and time.monotonic() - self._last >= PROGRESS_EVERY:
            self._progress()
            self._last = time.monotonic()
        if not self._head:
            return self._stream.read(n)
        cut = len(self._head) if n < 0 else n
        out, self._head = self._head[:cut], self._head[cut:]
        return out


def delete(ctx: Context, s: Session, image: Image, principal: Principal) -> None:
    _check_owner(image, principal)
    if image.protected:
        raise Conflict("image is protected; unset 'protected' first")
    in_use = s.scalar(
        select(Instance.id)
        .where(Instance.image_id == image.id, Instance.status.in_(("BUILD", "ACTIVE", "DELETING")))
        .limit(1)
    )
    if in_use:
        raise Conflict(f"image is in use by instance {in_use}")
    image.status = "deleted"
    ctx.store.delete(image.id)
    events.record(
        s, "image.deleted", "image", image.id, actor=principal.actor, project_id=image.owner
    )


def add_member(s: Session, image: Image, project_id: str, principal: Principal) -> None:
    """Share ``image`` with a project. Like Glance, any project id is accepted and answered
    the same way, so the owner of a shared image cannot probe which project ids exist; an
    id that names no project stores nothing (project ids are server-chosen UUIDs: no
    project can appear under it later). The event is recorded either way."""
    _check_owner(image, principal)
    if image.visibility != "shared":
        raise Conflict("members can only be added to images with visibility 'shared'")
    if len(project_id) > 36 or not project_id.strip():
        raise Invalid("a project id is 1 to 36 characters", field="project_id")
    exists = s.get(Project, project_id) is not None
    if exists and s.get(ImageMember, (image.id, project_id)) is None:
        s.add(ImageMember(image_id=image.id, project_id=project_id))
    events.record(
        s,
        "image.member_added",
        "image",
        image.id,
        actor=principal.actor,
        project_id=image.owner,
        member=project_id,
    )
