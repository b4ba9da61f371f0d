"""Open vSwitch command text, shared by the ``ovs`` driver and the netmiko ``ovs_linux`` set.

A batch is ONE ``ovs-vsctl`` transaction (commands joined by ``--``), then ``ovs-ofctl
mod-port BRIDGE PORT up|down`` per port for the administrative state (OVSDB has no writable
admin state; ``mod-port`` sets it on the netdev, the userspace datapath included).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from typing import Any

from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError


def vsctl_prefix(settings: dict[str, Any], timeout: float) -> list[str]:
    argv = ["ovs-vsctl", f"--timeout={max(1, int(timeout))}"]
    if settings.get("ovsdb"):
        argv.append(f"--db=unix:{settings['ovsdb']}")
    return argv


def ofctl_target(settings: dict[str, Any]) -> str:
    """The bridge's OpenFlow target: ``unix:RUNDIR/BRIDGE.mgmt`` when the OVS run directory
    is known (``rundir``, else the directory of ``ovsdb``), else the bridge name."""
    bridge = str(settings["bridge"])
    rundir = settings.get("rundir") or (
        posixpath.dirname(str(settings["ovsdb"])) if settings.get("ovsdb") else None
    )
    return f"unix:{posixpath.join(rundir, bridge)}.mgmt" if rundir else bridge


def port_args(change: PortConfig) -> list[str]:
    """The ``set port`` command of one change (none for shut-only)."""
    if change.shut_only:
        return []
    if change.mode == "access":
        cols = [f"tag={change.vlan}", "vlan_mode=access", "trunks=[]"]
    elif change.vlan is not None:
        cols = [
            "vlan_mode=native-untagged",
            f"tag={change.vlan}",
            f"trunks={_set(change.trunk_vlans)}",
        ]
    else:
        cols = ["vlan_mode=trunk", "tag=[]", f"trunks={_set(change.trunk_vlans)}"]
    return ["set", "port", change.port, *cols]


def _set(vlans: Sequence[int]) -> str:
    return "[" + ",".join(map(str, vlans)) + "]"


def apply_commands(
    settings: dict[str, Any], timeout: float, changes: Sequence[PortConfig]
) -> list[list[str]]:
    """argv lists: one ``mod-port`` per port for its administrative state, then the one
    vsctl transaction, which also waits until OVSDB reports every port's admin state as
    set (vswitchd updates ``admin_state`` a moment after ``mod-port``: a read right after
    would see the old one). The portal flips ports of powered-off nodes only, so a port
    enabled a moment before its VLAN changes carries no traffic."""
    last = {c.port: c for c in changes}  # a port changed twice ends as its last change
    txn: list[str] = []
    for change in changes:
        args = port_args(change)
        if args:
            txn += [*(["--"] if txn else []), *args]
    target = ofctl_target(settings)
    commands = []
    for port, change in last.items():
        state = "up" if change.enabled else "down"
        commands.append(
            ["ovs-ofctl", f"--timeout={max(1, int(timeout))}", "mod-port", target, port, state]
        )
        txn += [*(["--"] if txn else []), "wait-until", "interface", port, f"admin_state={state}"]
    commands.append([*vsctl_prefix(settings, timeout), *txn])
    return commands


def read_command(settings: dict[str, Any], timeout: float, ports: Sequence[str]) -> list[str]:
    """One vsctl call printing two JSON tables: the ports' VLAN columns, the interfaces'
    admin state."""
    return [
        *vsctl_prefix(settings, timeout),
        "--format=json",
        "--columns=name,tag,trunks,vlan_mode",
        "list",
        "port",
        *ports,
        "--",
        "--columns=name,admin_state",
        "list",
        "interface",
        *ports,
    ]


def _value(cell: Any) -> Any:
    """OVSDB JSON: a scalar, ``["set", [...]]`` (empty = none) or ``["uuid", ...]``."""
    if isinstance(cell, list) and len(cell) == 2 and cell[0] == "set":
        items = cell[1]
        return items if len(items) != 1 else items[0]
    return cell


def _ints(cell: Any) -> tuple[int, ...]:
    value = _value(cell)
    if value == [] or value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (int(value),)


def parse_read(text: str, ports: Sequence[str]) -> dict[str, PortConfig]:
    """Parse :func:`read_command`'s output. OVS semantics: no ``vlan_mode`` means access
    when a tag is set, else trunk (an empty ``trunks`` then carries every VLAN: it reads
    back as a trunk with no VLANs listed)."""
    docs = [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
    if len(docs) != 2:
        raise SwitchError(f"unexpected ovs-vsctl output: {text[:200]!r}", ErrorKind.ERROR)
    admin = {row[0]: row[1] for row in docs[1]["data"]}
    found: dict[str, PortConfig] = {}
    for name, tag, trunks, mode in docs[0]["data"]:
        vlan = _value(tag)
        vlan = vlan if isinstance(vlan, int) else None
        vlan_mode = _value(mode) or ("access" if vlan is not None else "trunk")
        enabled = admin.get(name) == "up"
        if vlan_mode == "access" and (vlan is not None or not enabled):
            found[name] = PortConfig(name, "access", vlan, enabled=enabled)
        elif vlan_mode == "access":  # no tag: OVS carries VLAN 0 only, the untagged frames
            found[name] = PortConfig(name, "trunk", None, (), enabled)
        else:
            native = vlan if vlan_mode in ("native-untagged", "native-tagged") else None
            found[name] = PortConfig(name, "trunk", native, _ints(trunks), enabled)
    missing = [p for p in ports if p not in found]
    if missing:
        raise SwitchError(f"no port named {', '.join(missing)} on the switch", ErrorKind.REJECTED)
    return {p: found[p] for p in ports}


def classify(conn: SwitchConn, stderr: str, rc: int) -> SwitchError:
    """A failed ovs-vsctl/ovs-ofctl: the database or bridge not answering is
    ``unreachable``, anything else the tool refused is ``rejected``."""
    text = conn.scrub(stderr.strip())[:500]
    unreachable = (
        "database connection failed",
        "timeout",
        "Connection refused",
        "No such file or directory",
        "failed to connect",
        "command not found",
    )
    if rc in (124, 127, 142) or (any(s in text for s in unreachable) and "no row" not in text):
        kind = ErrorKind.UNREACHABLE
    else:
        kind = ErrorKind.REJECTED
    return SwitchError(f"switch {conn.name}: {text or f'exit status {rc}'}", kind)
