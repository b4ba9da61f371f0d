"""The desired state of managed switch ports: set it, find what is pending, record results.

Only bookkeeping: workers decide what each port should be and push it to the switch. A
desired config is ``{"mode": "access"|"trunk", "vlan": int|None, "trunk_vlans": [int],
"enabled": bool}`` (``vlan`` is the access VLAN, or a trunk's native VLAN).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core.db import utcnow
from portal.core.models.switch import PURPOSES, SwitchPort
from portal.core.switch_settings import VLAN_MAX, VLAN_MIN

MODES = ("access", "trunk")


def _vlan(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not VLAN_MIN <= value <= VLAN_MAX:
        raise ValueError(f"{what} must be a VLAN id {VLAN_MIN}-{VLAN_MAX}, not {value!r}")
    return value


def normalize(config: Mapping[str, Any]) -> dict[str, Any]:
    """A port config in its one canonical form (so equal configs compare equal);
    ValueError if it is not one."""
    mode = config.get("mode", "access")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    enabled = config.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("enabled must be true or false")
    vlan = config.get("vlan")
    if vlan is not None:
        vlan = _vlan(vlan, "vlan")
    elif mode == "access" and enabled:
        raise ValueError("an enabled access port needs a vlan")
    trunk = sorted({_vlan(v, "trunk_vlans") for v in config.get("trunk_vlans") or ()})
    if mode == "access" and trunk:
        raise ValueError("an access port has no trunk_vlans")
    return {"mode": mode, "vlan": vlan, "trunk_vlans": trunk, "enabled": enabled}


def set_desired(
    session: Session,
    switch_id: str,
    name: str,
    config: Mapping[str, Any],
    purpose: str,
    node_port_id: str | None = None,
    instance_id: str | None = None,
) -> SwitchPort:
    """Record what port ``name`` of the switch should be. ``desired_generation`` grows only
    when the config changes, so setting the same state twice leaves nothing pending."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
    desired = normalize(config)
    port = _locked(session, switch_id, name)
    if port is None:
        port = SwitchPort(
            switch_id=switch_id,
            name=name,
            desired=desired,
            purpose=purpose,
            node_port_id=node_port_id,
            instance_id=instance_id,
            desired_generation=1,
            applied_generation=0,
        )
        try:
            with session.begin_nested():
                session.add(port)
        except IntegrityError:  # created meanwhile by another transaction: update that one
            port = _locked(session, switch_id, name)
            if port is None:
                raise
    if port.desired != desired:
        port.desired = desired
        port.desired_generation += 1
    port.purpose = purpose
    port.node_port_id = node_port_id
    port.instance_id = instance_id
    session.flush()
    return port


def _locked(session: Session, switch_id: str, name: str) -> SwitchPort | None:
    stmt = (
        select(SwitchPort)
        .where(SwitchPort.switch_id == switch_id, SwitchPort.name == name)
        .with_for_update()
    )
    return session.scalars(stmt).first()


def pending(session: Session, switch_id: str) -> list[SwitchPort]:
    """The switch's ports whose desired state has not been applied yet, by name."""
    stmt = (
        select(SwitchPort)
        .where(
            SwitchPort.switch_id == switch_id,
            SwitchPort.desired_generation != SwitchPort.applied_generation,
        )
        .order_by(SwitchPort.name)
    )
    return list(session.scalars(stmt))


def _pairs(ports: Mapping[str, int] | Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    return list(ports.items() if isinstance(ports, Mapping) else ports)


def mark_applied(
    session: Session, port_ids_with_generations: Mapping[str, int] | Iterable[tuple[str, int]]
) -> int:
    """Record that generation N of each port was applied (ids → N). A generation older than
    the one already recorded is ignored; one older than ``desired_generation`` (changed
    meanwhile) leaves the port pending. Clears ``last_error``; returns the rows changed."""
    now, count = utcnow(), 0
    for port_id, generation in _pairs(port_ids_with_generations):
        result = session.execute(
            update(SwitchPort)
            .where(SwitchPort.id == port_id, SwitchPort.applied_generation < generation)
            .values(applied_generation=generation, applied_at=now, last_error=None)
            .execution_options(synchronize_session="fetch")
        )
        count += result.rowcount  # type: ignore[attr-defined]
    return count


def mark_failed(session: Session, port_ids: Iterable[str], error: str) -> None:
    """Record why applying failed (the ports stay pending). ``error`` must be scrubbed."""
    ids = list(port_ids)
    if ids:
        session.execute(
            update(SwitchPort)
            .where(SwitchPort.id.in_(ids))
            .values(last_error=error[:4000])
            .execution_options(synchronize_session="fetch")
        )


def record_observed(
    session: Session, switch_id: str, observed: Mapping[str, Mapping[str, Any] | None]
) -> None:
    """Store what reconciliation read from the switch, per port name (None: not found)."""
    now = utcnow()
    ports = session.scalars(
        select(SwitchPort).where(
            SwitchPort.switch_id == switch_id, SwitchPort.name.in_(list(observed))
        )
    )
    for port in ports:
        seen = observed[port.name]
        port.observed = dict(seen) if seen is not None else None
        port.observed_at = now


def drifted(port: SwitchPort) -> bool | None:
    """Does the switch differ from the desired state? None until the port was read;
    a port read as absent (``observed`` None) has drifted."""
    if port.observed_at is None:
        return None
    if port.observed is None:
        return True
    try:
        return normalize(port.observed) != port.desired
    except ValueError:  # a config the portal never sets (e.g. access port without a VLAN)
        return True
