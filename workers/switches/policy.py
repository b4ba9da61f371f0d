"""Safety rails a network team asks for, checked before any command reaches a switch.

Pure functions of a :class:`SwitchConn`'s settings:
- ``protected_ports``: fnmatch patterns never touched (uplinks, trunks to other switches);
- ``allowed_ports``: fnmatch patterns the portal may touch (absent: every unprotected port);
- ``allowed_vlans``: "100-999,1000" (absent: 1-4094); ``provisioning_vlan`` and
  ``quarantine_vlan`` are always allowed;
- a port with no assignment is parked: access on ``quarantine_vlan``, else shut, never
  left on the default VLAN.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from workers.switches.base import MAX_VLAN, MIN_VLAN, ErrorKind, PortConfig, SwitchConn, SwitchError


class VlanRangeError(SwitchError, ValueError):
    """``allowed_vlans`` text that is not a list of VLAN ids and ranges."""

    def __init__(self, message: str, kind: str = ErrorKind.INVALID) -> None:
        super().__init__(message, kind)


def parse_vlan_ranges(text: str) -> list[tuple[int, int]]:
    """``"100-199, 300"`` -> ``[(100, 199), (300, 300)]``; :class:`VlanRangeError` (a
    ``ValueError``) naming the bad piece otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise VlanRangeError("VLAN ranges must be text such as '100-999,1000'")
    ranges = []
    for piece in text.split(","):
        item = piece.strip()
        low_text, dash, high_text = item.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if dash else low
        except ValueError:
            raise VlanRangeError(f"VLAN range {item!r} is not N or N-M (in {text!r})") from None
        if not (MIN_VLAN <= low <= MAX_VLAN and MIN_VLAN <= high <= MAX_VLAN):
            raise VlanRangeError(f"VLAN range {item!r} is outside {MIN_VLAN}-{MAX_VLAN}")
        if low > high:
            raise VlanRangeError(f"VLAN range {item!r} runs backwards")
        ranges.append((low, high))
    return ranges


def _vlan_setting(settings: dict[str, Any], key: str) -> int | None:
    value = settings.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_VLAN <= value <= MAX_VLAN:
        raise SwitchError(
            f"settings.{key} must be a VLAN id in {MIN_VLAN}-{MAX_VLAN}", ErrorKind.INVALID
        )
    return value


def _patterns(settings: dict[str, Any], key: str) -> list[str] | None:
    value = settings.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise SwitchError(f"settings.{key} must be a list of port name patterns", ErrorKind.INVALID)
    return value


def validate_settings(conn: SwitchConn) -> None:
    """The generic settings are well-formed (every driver's ``validate`` calls this)."""
    settings = conn.settings
    if not isinstance(settings, dict):
        raise SwitchError("settings must be an object", ErrorKind.INVALID)
    _vlan_setting(settings, "provisioning_vlan")
    _vlan_setting(settings, "quarantine_vlan")
    if settings.get("allowed_vlans") is not None:
        parse_vlan_ranges(settings["allowed_vlans"])
    _patterns(settings, "allowed_ports")
    _patterns(settings, "protected_ports")
    timeout = settings.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise SwitchError(
            "settings.timeout must be a positive number of seconds", ErrorKind.INVALID
        )


def _vlan_allowed(conn: SwitchConn) -> Any:
    text = conn.settings.get("allowed_vlans")
    ranges = parse_vlan_ranges(text) if text is not None else [(MIN_VLAN, MAX_VLAN)]
    always = {
        v
        for v in (
            _vlan_setting(conn.settings, "provisioning_vlan"),
            _vlan_setting(conn.settings, "quarantine_vlan"),
        )
        if v is not None
    }
    return lambda vlan: vlan in always or any(lo <= vlan <= hi for lo, hi in ranges)


def check(conn: SwitchConn, changes: Sequence[PortConfig]) -> None:
    """Refuse (kind ``rejected``) the whole batch if any change touches a protected port,
    a port outside ``allowed_ports`` or a VLAN outside ``allowed_vlans``; the message names
    every refused port and VLAN."""
    protected = _patterns(conn.settings, "protected_ports") or []
    allowed = _patterns(conn.settings, "allowed_ports")
    vlan_ok = _vlan_allowed(conn)
    refused: list[str] = []
    for change in changes:
        if any(fnmatch.fnmatchcase(change.port, p) for p in protected):
            refused.append(f"port {change.port} is protected")
            continue
        if allowed is not None and not any(fnmatch.fnmatchcase(change.port, p) for p in allowed):
            refused.append(f"port {change.port} is not in allowed_ports")
            continue
        bad = sorted(
            {v for v in (change.vlan, *change.trunk_vlans) if v is not None and not vlan_ok(v)}
        )
        if bad:
            refused.append(
                f"port {change.port}: VLAN {', '.join(map(str, bad))} not in allowed_vlans"
            )
    if refused:
        raise SwitchError(
            f"switch {conn.name} refuses these changes: {'; '.join(refused)}", ErrorKind.REJECTED
        )


def parking(conn: SwitchConn, port: str) -> PortConfig:
    """What a port with no assignment gets: access on the quarantine VLAN if one is set,
    else shut (VLAN untouched). Never the default VLAN."""
    quarantine = _vlan_setting(conn.settings, "quarantine_vlan")
    if quarantine is not None:
        return PortConfig(port, "access", quarantine)
    return PortConfig(port, "access", None, enabled=False)


def provisioning(conn: SwitchConn, port: str) -> PortConfig:
    """The port on the provisioning network (inspection, deploy, cleaning)."""
    vlan = _vlan_setting(conn.settings, "provisioning_vlan")
    if vlan is None:
        raise SwitchError(
            f"switch {conn.name} has no settings.provisioning_vlan", ErrorKind.INVALID
        )
    return PortConfig(port, "access", vlan)
