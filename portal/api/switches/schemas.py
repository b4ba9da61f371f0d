"""Switch schemas, and the ``local_link_connection`` of node ports (Ironic's shape)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from portal.api.fields import Int64, text
from portal.api.pagination import ListArgs, sort_keys
from portal.core.switch_settings import RECONCILE, VLAN_MAX, VLAN_MIN
from portal.services.switches import redacted_credentials, switch_drivers

NAME = text(
    "letters, digits, '.', '_', '~' and '-', starting with a letter or digit; not a uuid",
    max=255,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]*$",
)
PORT_NAME = text("a switch port's name", max=255)
MAC = r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$"


def _not_uuid(name: str | None) -> None:
    if name is None:
        return
    try:
        uuid.UUID(name)
    except ValueError:
        return
    raise ValidationError("a switch name must not be a uuid")


class Registered(validate.OneOf):
    """One of the names ``names()`` gives when the request comes (and when the OpenAPI
    document is built): the switch driver registry may change after import."""

    def __init__(self, names: Callable[[], tuple[str, ...]]) -> None:
        self._names = names
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> list[str]:
        return list(self._names())

    @choices.setter
    def choices(self, _value: Any) -> None:
        pass

    @property
    def choices_text(self) -> str:
        return ", ".join(self._names())

    @choices_text.setter
    def choices_text(self, _value: str) -> None:
        pass


class LocalLinkConnection(Schema):
    """Where a node port's cable goes. ``port_id`` is required with any other key."""

    switch_id = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "the switch's uuid or name, or its chassis MAC (LLDP)"},
    )
    port_id = fields.String(
        validate=PORT_NAME, metadata={"description": "the switch port's name, e.g. Ethernet1/7"}
    )
    switch_info = fields.String(
        validate=validate.Length(max=255),
        metadata={"description": "free text; names the switch when switch_id is absent"},
    )


def _secret(description: str, max: int = 1024) -> fields.String:
    return fields.String(
        allow_none=True,
        load_only=True,
        validate=validate.Length(min=0, max=max),
        metadata={"description": description + "; write-only (shown as ******)"},
    )


class SwitchCredentials(Schema):
    password = _secret("SSH or API password")
    private_key = _secret("an SSH private key (PEM or OpenSSH)", max=16384)
    private_key_passphrase = _secret("the private key's passphrase")
    enable_secret = _secret("privileged mode secret (Cisco 'enable')")


def _vlan(**kw: Any) -> Int64:
    return Int64(min=VLAN_MIN, max=VLAN_MAX, **kw)


def _patterns() -> fields.List:
    return fields.List(
        fields.String(validate=validate.Length(min=1, max=255)),
        allow_none=True,
        validate=validate.Length(max=256),
        metadata={"description": "fnmatch patterns of port names, e.g. Ethernet1/*"},
    )


class SwitchSettingsPatch(Schema):
    """Settings, merged key by key onto the stored ones (null removes a key). Keys beyond
    these are kept for the driver; secrets are refused here (use ``credentials``)."""

    class Meta:
        unknown = INCLUDE

    provisioning_vlan = _vlan(metadata={"description": "native VLAN while provisioning"})
    quarantine_vlan = _vlan(allow_none=True, metadata={"description": "parks idle ports"})
    allowed_vlans = fields.String(
        allow_none=True,
        validate=text("VLAN ids and ranges, e.g. 100-999,1000", max=4096, pattern=r"^[0-9 ,-]*$"),
    )
    allowed_ports = _patterns()
    protected_ports = _patterns()
    reconcile = fields.String(
        allow_none=True,
        validate=validate.OneOf(RECONCILE),
        metadata={"description": "on drift: fix it (default) or only report it"},
    )
    chassis_id = fields.String(
        allow_none=True,
        validate=validate.Regexp(MAC, error="not a MAC address"),
        metadata={"description": "the chassis MAC LLDP reports (local_link_connection)"},
    )
    bridge = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))
    ovsdb = fields.String(allow_none=True, validate=validate.Length(min=1, max=1024))
    netns = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))
    state_file = fields.String(allow_none=True, validate=validate.Length(min=1, max=1024))
    timeout = Int64(min=1, max=600, allow_none=True, metadata={"description": "seconds"})
    save_config = fields.Boolean(allow_none=True)


class SwitchSettings(SwitchSettingsPatch):
    provisioning_vlan = _vlan(
        required=True, metadata={"description": "native VLAN while provisioning"}
    )


class SwitchFields(Schema):
    name = fields.String(validate=[*NAME, _not_uuid])
    driver = fields.String(validate=Registered(switch_drivers))
    address = fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "host name or IP address the driver connects to"},
    )
    port = Int64(min=1, max=65535, allow_none=True)
    device_type = fields.String(
        allow_none=True,
        validate=text("e.g. cisco_ios, arista_eos, juniper_junos", max=64, pattern=r"^[a-z0-9_]+$"),
    )
    username = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))
    credentials = fields.Nested(SwitchCredentials)
    description = fields.String(allow_none=True, validate=validate.Length(max=4096))
    maintenance = fields.Boolean(metadata={"description": "workers leave the switch alone"})
    maintenance_reason = fields.String(allow_none=True, validate=validate.Length(max=1000))


class SwitchCreate(SwitchFields):
    name = fields.String(required=True, validate=[*NAME, _not_uuid])
    driver = fields.String(required=True, validate=Registered(switch_drivers))
    settings = fields.Nested(SwitchSettings, required=True)


class SwitchUpdate(SwitchFields):
    settings = fields.Nested(SwitchSettingsPatch)


class CredentialsOut(fields.Field):
    def _serialize(self, value: Any, attr: str | None, obj: Any, **kw: Any) -> Any:
        return redacted_credentials(value)


class SwitchOut(Schema):
    id = fields.String()
    name = fields.String()
    driver = fields.String()
    address = fields.String(allow_none=True)
    port = fields.Integer(allow_none=True)
    device_type = fields.String(allow_none=True)
    username = fields.String(allow_none=True)
    credentials = CredentialsOut(metadata={"description": "which are set, as ******"})
    settings = fields.Dict()
    description = fields.String(allow_none=True)
    maintenance = fields.Boolean()
    maintenance_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)


class SwitchList(Schema):
    switches = fields.List(fields.Nested(SwitchOut))
    next = fields.String(allow_none=True)


class SwitchListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name")
    driver = fields.String()
    maintenance = fields.Boolean()


class SwitchPortOut(Schema):
    id = fields.String()
    name = fields.String(metadata={"description": "the switch port"})
    purpose = fields.String(metadata={"description": "provisioning | tenant | quarantine"})
    node_port_uuid = fields.String(allow_none=True)
    node_port_address = fields.String(allow_none=True)
    node_uuid = fields.String(allow_none=True)
    instance_uuid = fields.String(allow_none=True)
    desired = fields.Dict(metadata={"description": "mode, vlan, trunk_vlans, enabled"})
    observed = fields.Dict(allow_none=True, metadata={"description": "as last read"})
    observed_at = fields.DateTime(allow_none=True)
    state = fields.String(metadata={"description": "applied | pending"})
    drift = fields.Boolean(
        allow_none=True, metadata={"description": "observed differs from desired; null: unread"}
    )
    desired_generation = fields.Integer()
    applied_generation = fields.Integer()
    applied_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True)


class SwitchPortList(Schema):
    ports = fields.List(fields.Nested(SwitchPortOut))
