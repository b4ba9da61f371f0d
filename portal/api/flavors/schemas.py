"""Flavor schemas (Nova field names, Ironic resource classes)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from portal.api.fields import INT32_MAX, MAX_RAM_MB, Int64, NonNegative, text
from portal.api.pagination import ListArgs, sort_keys

RESOURCE_CLASS = text("letters, digits, '_', '.' and '-'", max=80, pattern=r"^[A-Za-z0-9_.-]*$")


class FlavorCreate(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    description = fields.String(allow_none=True, validate=validate.Length(max=1000))
    vcpus = Int64(required=True, min=1, max=100_000)
    ram_mb = Int64(required=True, min=1, max=MAX_RAM_MB)
    disk_gb = Int64(required=True, min=0, max=2**30)
    cpu_arch = fields.String(
        allow_none=True, validate=validate.OneOf(["x86_64", "aarch64", "ppc64le", "s390x"])
    )
    resource_class = fields.String(load_default="baremetal", validate=RESOURCE_CLASS)
    extra_specs = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"example": {"capabilities:boot_mode": "uefi", "trait:CUSTOM_GPU": "forbidden"}},
    )
    is_public = fields.Boolean(load_default=True)


class FlavorUpdate(Schema):
    description = fields.String(allow_none=True, validate=validate.Length(max=1000))
    extra_specs = fields.Dict(keys=fields.String(), values=fields.String())
    disabled = fields.Boolean()


class FlavorOut(Schema):
    id = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    vcpus = fields.Integer()
    ram_mb = fields.Integer()
    disk_gb = fields.Integer()
    cpu_arch = fields.String(allow_none=True)
    resource_class = fields.String()
    extra_specs = fields.Dict()
    is_public = fields.Boolean()
    disabled = fields.Boolean()
    created_at = fields.DateTime()


class FlavorList(Schema):
    flavors = fields.List(fields.Nested(FlavorOut))
    next = fields.String(allow_none=True)


class FlavorListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name", "vcpus", "ram_mb")
    resource_class = fields.String()
    is_public = fields.Boolean()
    min_vcpus = NonNegative(max=INT32_MAX)
    min_ram_mb = NonNegative(max=INT32_MAX)


class AccessBody(Schema):
    project_id = fields.String(required=True)


class AccessList(Schema):
    projects = fields.List(fields.String())


class CapacityOut(Schema):
    flavor = fields.String()
    nodes = fields.Integer(metadata={"description": "free nodes that fit, visible to the caller"})
    quota_allows = fields.Integer(allow_none=True, metadata={"description": "None: no limit"})
    instances = fields.Integer(metadata={"description": "servers that could be placed now"})
    by_zone = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "admins only"}
    )
