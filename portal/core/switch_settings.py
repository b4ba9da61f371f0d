"""The safety rails in a switch's ``settings``, shared by the API (validation) and the
workers (enforcement): which VLANs and which ports the portal may touch.

- ``allowed_vlans``: ranges as a network team writes them, ``"100-999,1000,2000-2100"``.
  Empty or absent: any VLAN 1-4094. The switch's own ``provisioning_vlan`` and
  ``quarantine_vlan`` are always allowed (the portal must be able to park a port).
- ``allowed_ports``: fnmatch patterns (``Ethernet1/*``, ``tap*``); absent or empty: any port.
- ``protected_ports``: fnmatch patterns of ports never touched (uplinks, trunks to other
  switches), whatever ``allowed_ports`` says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from portal.core.errors import Invalid
from portal.core.secrets import generic_secret

VLAN_MIN, VLAN_MAX = 1, 4094
_RANGE = re.compile(r"^(\d{1,4})(?:-(\d{1,4}))?$")


def parse_vlan_ranges(text: str) -> list[tuple[int, int]]:
    """``"100-199,300"`` as ``[(100, 199), (300, 300)]``; ValueError naming the bad part."""
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = _RANGE.match(part.replace(" ", ""))
        if match is None:
            raise ValueError(f"'{part}' is not a VLAN id or a range like 100-199")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not (VLAN_MIN <= low <= high <= VLAN_MAX):
            raise ValueError(f"'{part}': VLAN ids are {VLAN_MIN}-{VLAN_MAX}, the low end first")
        ranges.append((low, high))
    return ranges


def vlan_allowed(settings: Mapping[str, Any], vlan: int) -> bool:
    if vlan in (settings.get("provisioning_vlan"), settings.get("quarantine_vlan")):
        return True
    text = settings.get("allowed_vlans") or ""
    if not text.strip():
        return VLAN_MIN <= vlan <= VLAN_MAX
    return any(low <= vlan <= high for low, high in parse_vlan_ranges(text))


def _matches(name: str, patterns: Iterable[str] | None) -> bool:
    return any(fnmatchcase(name, p) for p in patterns or ())


def port_protected(settings: Mapping[str, Any], name: str) -> bool:
    return _matches(name, settings.get("protected_ports"))


def port_allowed(settings: Mapping[str, Any], name: str) -> bool:
    """May the portal change this port? Not if protected; else if any pattern allows it."""
    if port_protected(settings, name):
        return False
    allowed = settings.get("allowed_ports")
    return not allowed or _matches(name, allowed)


def refusal(settings: Mapping[str, Any], name: str) -> str | None:
    """Why the portal may not manage ``name`` on this switch, or None if it may."""
    if port_protected(settings, name):
        return f"port '{name}' matches the switch's protected_ports"
    if not port_allowed(settings, name):
        return f"port '{name}' matches none of the switch's allowed_ports"
    return None


RECONCILE = ("fix", "report")
MAC_RE = re.compile(r"^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$")
# Driver keys with a known type: (type, max length or bound); other keys are free.
_TEXT_KEYS = {"bridge": 255, "ovsdb": 1024, "netns": 255, "state_file": 1024}
MAX_PATTERNS = 256


def _bad(key: str, message: str) -> Invalid:
    return Invalid(f"settings.{key}: {message}", field=f"settings.{key}")


def _int_vlan(settings: Mapping[str, Any], key: str) -> None:
    value = settings.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not VLAN_MIN <= value <= VLAN_MAX:
        raise _bad(key, f"a VLAN id {VLAN_MIN}-{VLAN_MAX} is required")


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A switch's settings, checked (Invalid naming ``settings.<key>``) and normalized:
    ``reconcile`` defaults to ``fix``, ``chassis_id`` is a lower-case MAC."""
    out = dict(settings)
    _int_vlan(out, "provisioning_vlan")
    if out.get("quarantine_vlan") is not None:
        _int_vlan(out, "quarantine_vlan")
    vlans = out.get("allowed_vlans")
    if vlans is not None:
        if not isinstance(vlans, str) or len(vlans) > 4096:
            raise _bad("allowed_vlans", 'a text like "100-999,1000" is required')
        try:
            parse_vlan_ranges(vlans)
        except ValueError as exc:
            raise _bad("allowed_vlans", str(exc)) from None
    for key in ("allowed_ports", "protected_ports"):
        patterns = out.get(key)
        if patterns is None:
            continue
        if (
            not isinstance(patterns, list)
            or len(patterns) > MAX_PATTERNS
            or not all(isinstance(p, str) and 0 < len(p) <= 255 for p in patterns)
        ):
            raise _bad(key, f"a list of at most {MAX_PATTERNS} port name patterns is required")
    out["reconcile"] = out.get("reconcile") or "fix"
    if out["reconcile"] not in RECONCILE:
        raise _bad("reconcile", f"one of {', '.join(RECONCILE)}")
    chassis = out.get("chassis_id")
    if chassis is not None:
        normal = chassis.strip().lower().replace("-", ":") if isinstance(chassis, str) else ""
        if not MAC_RE.match(normal):
            raise _bad("chassis_id", "a MAC address (aa:bb:cc:dd:ee:ff) is required")
        out["chassis_id"] = normal
    timeout = out.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600
    ):
        raise _bad("timeout", "seconds, more than 0 and at most 600")
    if "save_config" in out and not isinstance(out["save_config"], bool):
        raise _bad("save_config", "true or false")
    for key, limit in _TEXT_KEYS.items():
        value = out.get(key)
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= limit):
            raise _bad(key, f"a text of 1 to {limit} characters")
    for key in out:
        if generic_secret(key):
            raise _bad(key, "secrets go in the switch's credentials, never in settings")
    return out
