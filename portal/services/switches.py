"""Switches for admins: onboard, change, retire; their credentials sealed at rest.

Credentials (``password``, ``private_key``, …) are encrypted one value at a time with the
key ring of BMC passwords (portal.core.secrets), whatever their key is called, shown only
as ``******`` and handed in clear to switch drivers alone (:func:`credentials_in_clear`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.models import Node, Port, Switch, SwitchPort
from portal.core.secrets import REDACTED, Cipher
from portal.core.switch_settings import check_settings
from portal.core.switchports import drifted
from portal.services.context import Context
from tenants.principal import Principal

# The switch drivers a switch may name. One place, so it can become the switch driver
# registry's answer (workers.switches.registry.switch_drivers()) when that lands.
SWITCH_DRIVERS: tuple[str, ...] = ("fake", "ovs", "netmiko")
CREDENTIAL_KEYS = ("password", "private_key", "private_key_passphrase", "enable_secret")
# What a driver cannot work without, beyond the settings every switch has.
REQUIRED_BY_DRIVER: dict[str, tuple[str, ...]] = {
    "netmiko": ("address", "device_type", "username"),
}
COLUMNS = ("name", "driver", "address", "port", "device_type", "username", "description")


def switch_drivers() -> tuple[str, ...]:
    return SWITCH_DRIVERS


def switch_by_ident(s: Session, ident: str, for_update: bool = False) -> Switch:
    """A switch by uuid or by name (404 otherwise)."""
    stmt = select(Switch).where((Switch.id == ident) | (Switch.name == ident))
    if for_update:
        stmt = stmt.with_for_update()
    found = s.scalars(stmt).first()
    if found is None:
        raise NotFound(f"switch '{ident}' not found")
    return found


# -- credentials ---------------------------------------------------------------------------


def redacted_credentials(stored: Mapping[str, Any] | None) -> dict[str, str]:
    """Which credentials are set, each shown as ``******``."""
    return {k: REDACTED for k, v in (stored or {}).items() if v not in (None, "")}


def seal_credentials(
    cipher: Cipher, given: Mapping[str, Any], stored: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``given`` merged onto ``stored`` (RFC 7386): a value is encrypted, ``******`` keeps
    the stored one, null (or "") removes it."""
    out = dict(stored or {})
    for key, value in given.items():
        if value is None or value == "":
            out.pop(key, None)
        elif value == REDACTED:
            if (stored or {}).get(key) in (None, ""):
                raise Invalid(
                    f"credentials.{key} is {REDACTED}, which keeps a stored secret, "
                    "but none is stored there",
                    field=f"credentials.{key}",
                )
        else:
            out[key] = cipher.encrypt(value)
    return out


def credentials_in_clear(cipher: Cipher, switch: Switch) -> dict[str, Any]:
    """For a switch driver, in memory only. ValueError if no configured key opens one."""
    return {k: cipher.decrypt(v) for k, v in (switch.credentials or {}).items()}


def reseal_credentials(ctx: Context, rotate: bool) -> int:
    """As portal.services.nodes.reseal_secrets, for switch credentials: every value
    re-encrypted with the first key (``rotate``) or only clear text encrypted."""
    cipher = ctx.cipher

    def todo(creds: Mapping[str, Any]) -> int:
        return sum(rotate or not cipher.is_sealed(v) for v in creds.values())

    with ctx.session() as s:
        rows = s.execute(select(Switch.id, Switch.credentials).order_by(Switch.id)).all()
    count = 0
    for switch_id in [sid for sid, creds in rows if todo(creds or {})]:
        with ctx.session() as s:
            switch = s.get(Switch, switch_id, with_for_update=True)
            if switch is None:
                continue
            creds = dict(switch.credentials or {})
            for key, value in creds.items():
                if rotate or not cipher.is_sealed(value):
                    creds[key] = cipher.rotate(value)
                    count += 1
            switch.credentials = creds
    if count:  # the clear text must not linger in freed database pages
        ctx.db.purge_freed_pages()
    return count


# -- switches --------------------------------------------------------------------------------


def _check(switch: Switch) -> None:
    if switch.driver not in switch_drivers():
        raise Invalid(
            f"unknown switch driver '{switch.driver}'; known: {', '.join(switch_drivers())}",
            field="driver",
        )
    for key in REQUIRED_BY_DRIVER.get(switch.driver, ()):
        if not getattr(switch, key):
            raise Invalid(f"the {switch.driver} driver needs '{key}'", field=key)
    if switch.driver == "netmiko" and not {"password", "private_key"} & set(
        switch.credentials or {}
    ):
        raise Invalid(
            "the netmiko driver needs credentials.password or credentials.private_key",
            field="credentials",
        )


def _flush(s: Session, name: str) -> None:
    try:
        with s.begin_nested():
            s.flush()
    except IntegrityError:
        detail = f"a switch named '{name}' already exists"
        raise Conflict(detail, errors=[{"field": "name", "message": detail}]) from None


def create_switch(ctx: Context, s: Session, data: dict[str, Any], actor: Principal) -> Switch:
    switch = Switch(
        **{k: data.get(k) for k in COLUMNS},
        credentials=seal_credentials(ctx.cipher, data.get("credentials") or {}),
        settings=check_settings(
            {k: v for k, v in (data.get("settings") or {}).items() if v is not None}
        ),
        maintenance=data.get("maintenance", False),
        maintenance_reason=data.get("maintenance_reason"),
    )
    _check(switch)
    s.add(switch)
    _flush(s, switch.name)
    events.record(
        s,
        "switch.created",
        "switch",
        switch.id,
        actor=actor.actor,
        name=switch.name,
        driver=switch.driver,
        address=switch.address,
        credentials=sorted(switch.credentials),  # which are set, never their values
    )
    return switch


def update_switch(
    ctx: Context, s: Session, switch: Switch, data: dict[str, Any], actor: Principal
) -> Switch:
    """A merge patch: given fields replace; ``settings`` and ``credentials`` merge key by
    key (null removes a key; a credential sent back as ``******`` is kept)."""
    changed = [k for k in data if k not in ("settings", "credentials")]
    for key in changed:
        setattr(switch, key, data[key])
    if "settings" in data:
        merged = {**(switch.settings or {}), **data["settings"]}
        switch.settings = check_settings({k: v for k, v in merged.items() if v is not None})
        changed.append("settings")
    if "credentials" in data:
        switch.credentials = seal_credentials(ctx.cipher, data["credentials"], switch.credentials)
        changed.append("credentials")
    if not switch.maintenance:
        switch.maintenance_reason = None
    _check(switch)
    _flush(s, switch.name)
    events.record(
        s, "switch.updated", "switch", switch.id, actor=actor.actor, fields=sorted(changed)
    )
    return switch


def delete_switch(s: Session, switch: Switch, actor: Principal) -> None:
    """Refused (409, naming them) while node ports are wired to the switch."""
    wired = s.execute(
        select(Port.id, Port.address, Port.switch_port_name, Node.id, Node.name)
        .join(Node, Node.id == Port.node_id)
        .where(Port.switch_id == switch.id)
        .order_by(Node.name, Port.address)
        .limit(21)
    ).all()
    if wired:
        shown = [f"{name or nid} {mac} on {sp}" for _pid, mac, sp, nid, name in wired[:20]]
        more = " and more" if len(wired) > 20 else ""
        raise Conflict(
            f"switch '{switch.name}' is wired to node ports ({'; '.join(shown)}{more}): "
            "change their local_link_connection first",
            ports=[row[0] for row in wired[:20]],
        )
    events.record(s, "switch.deleted", "switch", switch.id, actor=actor.actor, name=switch.name)
    s.delete(switch)


def ports_view(s: Session, switch: Switch) -> list[dict[str, Any]]:
    """Every managed port of the switch: desired against observed, applied or pending."""
    rows = s.execute(
        select(SwitchPort, Port.address, Port.node_id)
        .outerjoin(Port, Port.id == SwitchPort.node_port_id)
        .where(SwitchPort.switch_id == switch.id)
        .order_by(SwitchPort.name)
    ).all()
    return [
        {
            "id": sp.id,
            "name": sp.name,
            "purpose": sp.purpose,
            "node_port_uuid": sp.node_port_id,
            "node_port_address": address,
            "node_uuid": node_id,
            "instance_uuid": sp.instance_id,
            "desired": sp.desired,
            "observed": sp.observed,
            "observed_at": sp.observed_at,
            "state": "applied" if sp.applied_generation == sp.desired_generation else "pending",
            "drift": drifted(sp),
            "desired_generation": sp.desired_generation,
            "applied_generation": sp.applied_generation,
            "applied_at": sp.applied_at,
            "last_error": sp.last_error,
        }
        for sp, address, node_id in rows
    ]
