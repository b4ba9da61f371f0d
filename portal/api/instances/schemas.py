"""Instance schemas (Nova-like servers)."""

from __future__ import annotations

from typing import Any

from flask import g
from marshmallow import Schema, ValidationError, fields, validate

from portal.api.fields import text
from portal.api.pagination import ListArgs, sort_keys
from portal.core.states import INSTANCE_FSM


class NetworkItem(Schema):
    network = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "id or name"},
    )
    fixed_ip = fields.String(
        allow_none=True,
        validate=validate.Length(min=2, max=45),
        metadata={"description": "an address of one of the network's subnets"},
    )


ITEM = NetworkItem()


class NetworkRequest(fields.Field):
    """One requested network: ``{"network": ..., "fixed_ip": ...}``, or a bare id or name
    (what earlier versions took)."""

    def __init__(self, **kwargs: Any) -> None:
        doc = {
            "oneOf": [
                {"type": "string", "minLength": 1, "maxLength": 255},
                {
                    "type": "object",
                    "properties": {
                        "network": {"type": "string", "minLength": 1, "maxLength": 255},
                        "fixed_ip": {
                            "type": "string",
                            "nullable": True,
                            "minLength": 2,
                            "maxLength": 45,
                        },
                    },
                    "required": ["network"],
                    "additionalProperties": False,
                },
            ]
        }
        super().__init__(metadata=doc, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if isinstance(value, str):
            value = {"network": value}
        if not isinstance(value, dict):
            raise ValidationError("a network id or name, or {network, fixed_ip}")
        return ITEM.load(value)


class InstanceCreate(Schema):
    name = fields.String(
        required=True,
        validate=text(
            "a hostname: letters, digits, '.' and '-', starting with a letter or digit",
            max=63,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$",
        ),
    )
    flavor = fields.String(required=True, metadata={"description": "flavor id or name"})
    image = fields.String(required=True, metadata={"description": "image id or name"})
    key_names = fields.List(fields.String(), load_default=list, validate=validate.Length(max=20))
    networks = fields.List(
        NetworkRequest(),
        load_default=list,
        validate=validate.Length(max=8),
        metadata={
            "description": "one NIC each, in order: {network: id or name, fixed_ip} or an id "
            "or name; none: the project's only network, else the provider network"
        },
    )
    user_data = fields.String(allow_none=True, validate=validate.Length(max=65535))
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=255)),
        values=fields.String(validate=validate.Length(max=255)),
        load_default=dict,
        validate=validate.Length(max=128),
        metadata={"description": "key/value pairs, on the config drive as meta_data.json 'meta'"},
    )
    availability_zone = fields.String(allow_none=True, validate=validate.Length(max=255))
    server_group = fields.String(
        allow_none=True, metadata={"description": "server group id (affinity policies)"}
    )
    scheduler_hints = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={
            "description": "same_node_as, different_node_from, same_rack_as, "
            "different_rack_from, same_zone_as, different_zone_from: server ids; "
            "node_name (admins): a node"
        },
    )


class AddressOut(Schema):
    network_id = fields.String()
    address = fields.String()


class VifAddressOut(Schema):
    address = fields.String()
    subnet_id = fields.String()
    cidr = fields.String(attribute="subnet.cidr")
    gateway_ip = fields.String(attribute="subnet.gateway_ip", allow_none=True)
    ip_version = fields.Integer(attribute="subnet.ip_version")


class VifPortOut(Schema):
    id = fields.String()
    address = fields.String(metadata={"description": "MAC address"})


class VifOut(Schema):
    id = fields.String()
    index = fields.Integer()
    network_id = fields.String()
    network_name = fields.String(attribute="network.name")
    fixed_ip = fields.String(allow_none=True)
    port = fields.Nested(
        VifPortOut, allow_none=True, metadata={"description": "the node's NIC, once bound"}
    )
    addresses = fields.List(fields.Nested(VifAddressOut))


class FaultOut(fields.Field):
    """Admins see the scheduler's full detail; tenants the message only."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kw: Any) -> Any:
        if not value:
            return None
        principal = getattr(g, "principal", None)
        if principal is not None and principal.is_admin:
            return value
        return {"code": value.get("code"), "message": value.get("message")}


class InstanceOut(Schema):
    id = fields.String()
    name = fields.String()
    project_id = fields.String()
    user_id = fields.String(allow_none=True)
    flavor_id = fields.String()
    image_id = fields.String()
    node_id = fields.Method("_node")
    status = fields.String()
    task_state = fields.String(allow_none=True)
    progress = fields.Integer()
    fault = FaultOut()
    key_names = fields.Method("_keys")
    addresses = fields.List(fields.Nested(AddressOut))
    networks = fields.List(
        fields.Nested(VifOut), attribute="vifs", metadata={"description": "one per NIC, in order"}
    )
    availability_zone = fields.String(allow_none=True)
    server_group = fields.String(attribute="server_group_id", allow_none=True)
    scheduler_hints = fields.Dict()
    metadata = fields.Dict(attribute="meta")
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)
    launched_at = fields.DateTime(allow_none=True)
    terminated_at = fields.DateTime(allow_none=True)

    def _keys(self, inst: Any) -> list[str]:
        return [k["name"] for k in inst.ssh_keys or []]

    def _node(self, inst: Any) -> str | None:
        principal = getattr(g, "principal", None)
        return inst.node_id if principal is not None and principal.is_admin else None


class InstanceList(Schema):
    instances = fields.List(fields.Nested(InstanceOut))
    next = fields.String(allow_none=True)


class InstanceListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name", "status")
    status = fields.String(validate=validate.OneOf(sorted(INSTANCE_FSM.states)))
    name = fields.String()
    project_id = fields.String(metadata={"description": "admins only"})
    include_deleted = fields.Boolean(load_default=False)
