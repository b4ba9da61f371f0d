"""Wiring node ports to switch ports: ``local_link_connection`` as Ironic has it.

``switch_id`` names a switch by uuid or name, or (Ironic's form, from LLDP) by the MAC of
its chassis, matched against the switch's ``settings.chassis_id``; without ``switch_id``,
``switch_info`` may name it. ``port_id`` is the switch port's name. The resolved switch and
port name are stored on the node port, and one switch port is wired to one node port.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core.errors import Conflict, Invalid
from portal.core.models import Node, Port, Switch
from portal.core.switch_settings import MAC_RE, refusal


def _field(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _find(s: Session, ident: str) -> Switch | None:
    found = s.scalars(select(Switch).where((Switch.id == ident) | (Switch.name == ident))).first()
    if found is not None:
        return found
    mac = ident.strip().lower().replace("-", ":")
    if not MAC_RE.match(mac):
        return None
    # Few switches, and chassis_id lives in JSON (queried differently per database).
    for switch in s.scalars(select(Switch).order_by(Switch.name)):
        if (switch.settings or {}).get("chassis_id") == mac:
            return switch
    return None


def resolve(
    s: Session, link: dict[str, Any] | None, prefix: str = "local_link_connection"
) -> tuple[str | None, str | None]:
    """(switch id, switch port name) a local_link_connection names; (None, None) for none.
    Invalid (422) naming ``<prefix>.switch_id`` or ``<prefix>.port_id`` otherwise."""
    if not link:
        return None, None
    port_name = link.get("port_id")
    if not isinstance(port_name, str) or not port_name.strip():
        raise Invalid(
            "the switch port's name (port_id) is required", field=_field(prefix, "port_id")
        )
    ident = link.get("switch_id") or link.get("switch_info")
    if not ident:
        raise Invalid(
            "switch_id (a switch's uuid, name or chassis MAC) or switch_info is required",
            field=_field(prefix, "switch_id"),
        )
    switch = _find(s, ident)
    if switch is None:
        key = "switch_id" if link.get("switch_id") else "switch_info"
        raise Invalid(f"switch '{ident}' not found", field=_field(prefix, key))
    port_name = port_name.strip()
    if why := refusal(switch.settings or {}, port_name):
        raise Invalid(
            f"{why} (switch '{switch.name}'): the portal may not manage it",
            field=_field(prefix, "port_id"),
        )
    return switch.id, port_name


def check_free(
    s: Session,
    wanted: list[tuple[str, str, str]],
    except_port: str | None = None,
) -> None:
    """409 if a switch port in ``wanted`` (switch id, port name, field) is wired to another
    node port already, naming that port and its node; 422 if ``wanted`` names one twice."""
    seen: set[tuple[str, str]] = set()
    for switch_id, name, field in wanted:
        if (switch_id, name) in seen:
            raise Invalid(f"switch port '{name}' is named by two ports", field=field)
        seen.add((switch_id, name))
        other = s.execute(
            select(Port.id, Port.address, Node.id, Node.name, Switch.name)
            .join(Node, Node.id == Port.node_id)
            .join(Switch, Switch.id == Port.switch_id)
            .where(Port.switch_id == switch_id, Port.switch_port_name == name)
        ).first()
        if other is not None and other[0] != except_port:
            port_id, mac, node_id, node_name, switch_name = other
            raise Conflict(
                f"switch '{switch_name}' port '{name}' is already wired to port {port_id} "
                f"({mac}) of node '{node_name or node_id}'",
                errors=[{"field": field, "message": f"wired to port {port_id} already"}],
                port=port_id,
                node=node_id,
            )


def wire(
    s: Session, port: Port, link: dict[str, Any] | None, prefix: str = "local_link_connection"
) -> None:
    """Set ``port``'s local_link_connection (None or {}: unwired), resolved and checked."""
    switch_id, name = resolve(s, link, prefix)
    if switch_id is not None and name is not None:
        check_free(s, [(switch_id, name, _field(prefix, "port_id"))], except_port=port.id)
    port.local_link_connection = dict(link) if link else None
    port.switch_id, port.switch_port_name = switch_id, name
