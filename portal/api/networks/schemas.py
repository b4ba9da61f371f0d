"""Network, subnet and segment range schemas (Neutron field names)."""

from __future__ import annotations

from typing import Any

from flask import g
from marshmallow import Schema, fields, validate

from portal.api.fields import Int64, text
from portal.api.pagination import ListArgs, sort_keys
from portal.core.models.network import MAX_VLAN, MIN_VLAN, NETWORK_TYPES

NAME = text("a name", max=255)
PHYSNET = text(
    "a physical network name: letters, digits, '_', '.' and '-'",
    max=64,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
)
DESCRIPTION = validate.Length(max=1000)
ADDRESS = validate.Length(min=2, max=45)
CIDR = validate.Length(min=3, max=49)


def _admin() -> bool:
    principal = getattr(g, "principal", None)
    return principal is not None and principal.is_admin


class NetworkCreate(Schema):
    name = fields.String(required=True, validate=NAME)
    description = fields.String(allow_none=True, validate=DESCRIPTION)
    network_type = fields.String(
        validate=validate.OneOf(NETWORK_TYPES),
        metadata={"description": "vlan (default); flat: admins only"},
    )
    physical_network = fields.String(
        validate=PHYSNET, metadata={"description": "admins only; default: BMS_DEFAULT_PHYSNET"}
    )
    segmentation_id = Int64(
        min=MIN_VLAN,
        max=MAX_VLAN,
        metadata={"description": "admins only: a VLAN id, inside the tenant ranges or not"},
    )
    shared = fields.Boolean(metadata={"description": "admins only: usable by every project"})
    project_id = fields.String(
        validate=validate.Length(max=36), metadata={"description": "admins only: the owner"}
    )
    mtu = Int64(min=68, max=9216, allow_none=True)


class NetworkUpdate(Schema):
    name = fields.String(validate=NAME)
    description = fields.String(allow_none=True, validate=DESCRIPTION)


class NetworkOut(Schema):
    id = fields.String()
    name = fields.String()
    project_id = fields.String(allow_none=True)
    network_type = fields.String()
    physical_network = fields.Method("_physnet", allow_none=True, metadata={"type": "string"})
    segmentation_id = fields.Method("_segment", allow_none=True, metadata={"type": "integer"})
    shared = fields.Boolean()
    description = fields.String(allow_none=True)
    mtu = fields.Integer(allow_none=True)
    subnets = fields.Function(
        lambda n: [s.id for s in n.subnets],
        metadata={"type": "array", "items": {"type": "string"}},
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)

    # Provider attributes are the operator's business (as in Neutron): admins only.
    def _physnet(self, net: Any) -> str | None:
        return net.physical_network if _admin() else None

    def _segment(self, net: Any) -> int | None:
        return net.segmentation_id if _admin() else None


class NetworkList(Schema):
    networks = fields.List(fields.Nested(NetworkOut))
    next = fields.String(allow_none=True)


class NetworkListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name")
    name = fields.String()
    shared = fields.Boolean()
    project_id = fields.String(metadata={"description": "admins only"})


class Pool(Schema):
    start = fields.String(required=True, validate=ADDRESS)
    end = fields.String(required=True, validate=ADDRESS)


class Route(Schema):
    destination = fields.String(required=True, validate=CIDR)
    nexthop = fields.String(required=True, validate=ADDRESS)


class SubnetCreate(Schema):
    network = fields.String(
        required=True, validate=NAME, metadata={"description": "network id or name"}
    )
    name = fields.String(validate=validate.Length(max=255))
    description = fields.String(allow_none=True, validate=DESCRIPTION)
    ip_version = Int64(
        min=4,
        max=6,
        validate=validate.OneOf([4, 6]),
        metadata={"description": "default: the CIDR's"},
    )
    cidr = fields.String(required=True, validate=CIDR, metadata={"description": "e.g. 10.0.0.0/24"})
    gateway_ip = fields.String(
        allow_none=True,
        validate=ADDRESS,
        metadata={"description": "default: the first address; null: no gateway"},
    )
    allocation_pools = fields.List(
        fields.Nested(Pool),
        validate=validate.Length(max=16),
        metadata={"description": "default: the CIDR less network, broadcast and gateway"},
    )
    dns_nameservers = fields.List(fields.String(validate=ADDRESS), validate=validate.Length(max=5))
    host_routes = fields.List(fields.Nested(Route), validate=validate.Length(max=20))


class SubnetUpdate(Schema):
    name = fields.String(validate=validate.Length(max=255))
    description = fields.String(allow_none=True, validate=DESCRIPTION)
    dns_nameservers = fields.List(fields.String(validate=ADDRESS), validate=validate.Length(max=5))
    host_routes = fields.List(fields.Nested(Route), validate=validate.Length(max=20))


class SubnetOut(Schema):
    id = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    network_id = fields.String()
    project_id = fields.String(allow_none=True)
    ip_version = fields.Integer()
    cidr = fields.String()
    gateway_ip = fields.String(allow_none=True)
    allocation_pools = fields.List(fields.Nested(Pool))
    dns_nameservers = fields.List(fields.String())
    host_routes = fields.List(fields.Nested(Route))
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)


class SubnetList(Schema):
    subnets = fields.List(fields.Nested(SubnetOut))
    next = fields.String(allow_none=True)


class SubnetListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name", "cidr")
    network_id = fields.String()
    name = fields.String()
    ip_version = Int64(min=4, max=6, validate=validate.OneOf([4, 6]))


class RangeCreate(Schema):
    physical_network = fields.String(required=True, validate=PHYSNET)
    network_type = fields.String(load_default="vlan", validate=validate.OneOf(["vlan"]))
    minimum = Int64(required=True, min=MIN_VLAN, max=MAX_VLAN)
    maximum = Int64(required=True, min=MIN_VLAN, max=MAX_VLAN)
    description = fields.String(allow_none=True, validate=DESCRIPTION)


class RangeUpdate(Schema):
    description = fields.String(allow_none=True, validate=DESCRIPTION)


class RangeOut(Schema):
    id = fields.String()
    physical_network = fields.String()
    network_type = fields.String()
    minimum = fields.Integer()
    maximum = fields.Integer()
    description = fields.String(allow_none=True)
    created_at = fields.DateTime()


class RangeList(Schema):
    segment_ranges = fields.List(fields.Nested(RangeOut))
    next = fields.String(allow_none=True)


class RangeListArgs(ListArgs):
    sort_key = sort_keys("created_at", "minimum")
    physical_network = fields.String()
