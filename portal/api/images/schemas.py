"""Image schemas (Glance field names)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from portal.api.fields import MAX_RAM_MB, Int64
from portal.api.pagination import ListArgs, sort_keys
from portal.core.imageformat import DISK_FORMATS

VISIBILITY = ("public", "private", "shared", "community")
SHA256 = validate.Regexp(r"^[0-9a-fA-F]{64}$", error="a sha256 is exactly 64 hex digits")


class ImageCreate(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    disk_format = fields.String(
        load_default="raw",
        validate=validate.OneOf(DISK_FORMATS),
        metadata={"description": "checked against the data's header at upload"},
    )
    container_format = fields.String(load_default="bare", validate=validate.OneOf(["bare"]))
    min_disk = Int64(load_default=0, min=0, max=2**30)
    min_ram = Int64(load_default=0, min=0, max=MAX_RAM_MB)
    visibility = fields.String(load_default="private", validate=validate.OneOf(VISIBILITY))
    protected = fields.Boolean(load_default=False)
    sha256 = fields.String(
        data_key="sha256",
        attribute="expected_sha256",
        validate=SHA256,
        metadata={"description": "checked when the data is uploaded"},
    )
    owner = fields.String(
        validate=validate.Length(max=36, error="a project id: at most {max} characters"),
        metadata={"description": "admins only: the owning project"},
    )


class ImageUpdate(Schema):
    name = fields.String(validate=validate.Length(min=1, max=255))
    sha256 = fields.String(
        attribute="expected_sha256",
        allow_none=True,
        validate=SHA256,
        metadata={"description": "correct the declared sha256; only while the image is queued"},
    )
    visibility = fields.String(validate=validate.OneOf(VISIBILITY))
    protected = fields.Boolean()
    min_disk = Int64(min=0, max=2**30)


class ImageOut(Schema):
    id = fields.String()
    name = fields.String()
    disk_format = fields.String()
    container_format = fields.String()
    min_disk = fields.Integer()
    min_ram = fields.Integer()
    visibility = fields.String()
    owner = fields.String(allow_none=True)
    status = fields.String()
    size = fields.Integer(allow_none=True)
    virtual_size = fields.Integer(
        allow_none=True, metadata={"description": "bytes of the disk the image describes"}
    )
    sha256 = fields.Function(
        lambda i: i.checksum_sha256 or i.expected_sha256,
        allow_none=True,
        metadata={
            "type": "string",
            "description": "the data's sha256 once uploaded; before, the declared one (if any)",
        },
    )
    protected = fields.Boolean()
    file = fields.Function(lambda i: f"/v1/images/{i.id}/file")
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)


class ImageList(Schema):
    images = fields.List(fields.Nested(ImageOut))
    next = fields.String(allow_none=True)


class ImageListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name", "size")
    name = fields.String()
    visibility = fields.String(validate=validate.OneOf(VISIBILITY))
    status = fields.String(validate=validate.OneOf(["queued", "saving", "active"]))
    owner = fields.String()


class MemberBody(Schema):
    project_id = fields.String(required=True)
