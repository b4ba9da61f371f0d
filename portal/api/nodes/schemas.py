"""Node and port schemas (Ironic field names)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from portal.api.pagination import ListArgs
from portal.core.secrets import redact
from portal.core.states import NODE_FSM, POWER_TARGETS

MAC = validate.Regexp(
    r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$",
    error="not a MAC address (expected aa:bb:cc:dd:ee:ff)",
)
TRAIT = validate.Regexp(r"^[A-Z0-9_]{1,255}$", error="traits are UPPER_CASE_WITH_UNDERSCORES")
NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,254}$",
    error="letters, digits, '.', '_', '~' and '-'; must not look like a uuid",
)


class Properties(Schema):
    class Meta:
        unknown = "include"  # operators may record more facts; the known ones are typed

    cpus = fields.Integer(validate=validate.Range(min=1, max=100_000))
    memory_mb = fields.Integer(validate=validate.Range(min=1, max=2**40))
    local_gb = fields.Integer(validate=validate.Range(min=0, max=2**30))
    cpu_arch = fields.String(validate=validate.OneOf(["x86_64", "aarch64", "ppc64le", "s390x"]))


class PortIn(Schema):
    address = fields.String(required=True, validate=MAC)
    physical_network = fields.String(allow_none=True, validate=validate.Length(max=64))
    pxe_enabled = fields.Boolean(load_default=True)


class PortCreate(PortIn):
    node = fields.String(required=True, metadata={"description": "node uuid or name"})


class PortOut(Schema):
    uuid = fields.String(attribute="id")
    node_uuid = fields.String(attribute="node_id")
    address = fields.String()
    physical_network = fields.String(allow_none=True)
    pxe_enabled = fields.Boolean()
    created_at = fields.DateTime()


def _no_uuid_name(name: str | None) -> None:
    import uuid

    if name is None:
        return
    try:
        uuid.UUID(name)
    except ValueError:
        return
    raise ValidationError("a node name must not be a uuid")


class NodeBase(Schema):
    name = fields.String(allow_none=True, validate=[NAME, _no_uuid_name])
    resource_class = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,80}$"))
    driver = fields.String(validate=validate.Length(min=1, max=40))
    driver_info = fields.Dict(keys=fields.String(), values=fields.Raw())
    properties = fields.Nested(Properties)
    capabilities = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_.-]+$")), values=fields.String()
    )
    traits = fields.List(fields.String(validate=TRAIT), validate=validate.Length(max=50))
    owner = fields.String(
        allow_none=True, metadata={"description": "project id the node is dedicated to"}
    )

    @validates_schema
    def _unique_traits(self, data: dict[str, Any], **_: Any) -> None:
        traits = data.get("traits") or []
        if len(set(traits)) != len(traits):
            raise ValidationError("duplicate traits", "traits")


class NodeCreate(NodeBase):
    ports = fields.List(fields.Nested(PortIn), load_default=list)


class NodePatchable(NodeBase):
    """What PATCH may change: the create fields, minus ports (managed at /v1/ports)."""


class DriverInfoOut(fields.Field):
    def _serialize(self, value: Any, attr: str | None, obj: Any, **kw: Any) -> Any:
        return redact(value or {})


class NodeOut(Schema):
    uuid = fields.String(attribute="id")
    name = fields.String(allow_none=True)
    resource_class = fields.String()
    driver = fields.String()
    driver_info = DriverInfoOut()
    properties = fields.Dict()
    capabilities = fields.Dict()
    traits = fields.List(fields.String())
    provision_state = fields.String()
    target_provision_state = fields.String(allow_none=True)
    power_state = fields.String(allow_none=True)
    maintenance = fields.Boolean()
    maintenance_reason = fields.String(allow_none=True)
    last_error = fields.String(allow_none=True)
    reservation = fields.String(allow_none=True)
    owner = fields.String(allow_none=True)
    instance_uuid = fields.String(attribute="instance_id", allow_none=True)
    ports = fields.List(fields.Nested(PortOut))
    allowed_actions = fields.Method("_allowed")
    provision_updated_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)

    def _allowed(self, node: Any) -> list[str]:
        return NODE_FSM.allowed(node.provision_state)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def dump_nodes(nodes: list[Any], ports: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """``NodeOut(many=True).dump(nodes)`` built directly, for the list endpoint.

    ``nodes`` are rows or objects with the node columns; ``ports`` maps node id to port
    rows, ordered by address. A 1,000-node page took ~40 ms in marshmallow alone; this
    gives the same document (same keys and values) in a fraction of that. Keep in step
    with :class:`NodeOut` and :class:`PortOut`.
    """
    allowed: dict[str, list[str]] = {}
    out = []
    for n in nodes:
        state = n.provision_state
        if state not in allowed:
            allowed[state] = NODE_FSM.allowed(state)
        out.append(
            {
                "uuid": n.id,
                "name": n.name,
                "resource_class": n.resource_class,
                "driver": n.driver,
                "driver_info": redact(n.driver_info or {}),
                "properties": n.properties,
                "capabilities": n.capabilities,
                "traits": n.traits,
                "provision_state": state,
                "target_provision_state": n.target_provision_state,
                "power_state": n.power_state,
                "maintenance": n.maintenance,
                "maintenance_reason": n.maintenance_reason,
                "last_error": n.last_error,
                "reservation": n.reservation,
                "owner": n.owner,
                "instance_uuid": n.instance_id,
                "ports": [
                    {
                        "uuid": p.id,
                        "node_uuid": p.node_id,
                        "address": p.address,
                        "physical_network": p.physical_network,
                        "pxe_enabled": p.pxe_enabled,
                        "created_at": _iso(p.created_at),
                    }
                    for p in ports.get(n.id, ())
                ],
                "allowed_actions": allowed[state],
                "provision_updated_at": _iso(n.provision_updated_at),
                "created_at": _iso(n.created_at),
                "updated_at": _iso(n.updated_at),
            }
        )
    return out


class NodeList(Schema):
    nodes = fields.List(fields.Nested(NodeOut))
    next = fields.String(allow_none=True)


class NodeListArgs(ListArgs):
    provision_state = fields.String(validate=validate.OneOf(sorted(NODE_FSM.states)))
    resource_class = fields.String()
    maintenance = fields.Boolean()
    owner = fields.String()
    driver = fields.String()
    associated = fields.Boolean(metadata={"description": "has an instance"})


class ProvisionBody(Schema):
    target = fields.String(
        required=True, metadata={"description": "manage | provide | deploy | undeploy"}
    )


class PowerBody(Schema):
    target = fields.String(required=True, validate=validate.OneOf(POWER_TARGETS))


class MaintenanceBody(Schema):
    reason = fields.String(allow_none=True, validate=validate.Length(max=1000))


class ValidationOut(Schema):
    power = fields.Dict()
    management = fields.Dict()
    deploy = fields.Dict()
    network = fields.Dict()


class ImportRowResult(Schema):
    row = fields.Integer()
    status = fields.String()
    uuid = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    errors = fields.List(fields.Dict())


class ImportResult(Schema):
    created = fields.Integer()
    failed = fields.Integer()
    results = fields.List(fields.Nested(ImportRowResult))


class PortList(Schema):
    ports = fields.List(fields.Nested(PortOut))
    next = fields.String(allow_none=True)


class PortListArgs(ListArgs):
    node = fields.String()
    address = fields.String()
