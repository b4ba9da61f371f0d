"""Per-vendor command sets of the ``netmiko`` driver: the exact CLI text for access ports,
trunks with a native VLAN, shut/no shut, config save, and the read command and its parser.

Each set renders a whole batch; the driver sends it in one config-mode entry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers.switches import ovscmd
from workers.switches.base import PortConfig

# What a device echoes when it refuses a command.
IOS_ERRORS = r"% ?Invalid|% ?Incomplete|% ?Ambiguous|% ?Error|% ?Bad|Error:|ERROR:"


def vlan_list(vlans: Sequence[int]) -> str:
    """``(100, 101, 102, 200)`` -> ``"100-102,200"``."""
    parts: list[str] = []
    items = sorted(set(vlans))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)


def parse_vlan_list(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for piece in re.split(r"[,\s]+", text.strip()):
        if not piece or piece.lower() in ("none", "add"):
            continue
        low, _, high = piece.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            out.extend(range(int(low), int(high or low) + 1))
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class CommandSet:
    """An IOS-like CLI (Cisco IOS, NX-OS, Arista EOS, Dell OS10 override bits of it)."""

    name: str
    netmiko_type: str
    error_pattern: str = IOS_ERRORS
    enable: bool = True  # enter privileged mode first
    config_mode: bool = True  # the batch is sent in config mode
    exit_config: str | None = "end"  # None: netmiko's default
    commit: bool = False  # Junos, NCLU: changes take effect on commit
    save: bool = True  # running config is lost on reboot unless saved
    interface_word: str = "interface"
    show_config: str = "show running-config interface {port}"
    create_vlans: bool = True  # "vlan N" before use (IOS-likes refuse unknown access VLANs)
    # Outside config mode: what ends a command's output (None: the prompt, with the echo
    # checked). Long shell lines wrap in the echo, so those wait for their own marker.
    expect_string: str | None = None

    # -- rendering ---------------------------------------------------------------------

    def render(self, changes: Sequence[PortConfig], settings: dict[str, Any]) -> list[str]:
        cmds: list[str] = []
        if self.create_vlans and settings.get("create_vlans", True):
            vlans = sorted({v for c in changes for v in (c.vlan, *c.trunk_vlans) if v})
            for vlan in vlans:
                cmds += [f"vlan {vlan}", "exit"]
        for change in changes:
            cmds += [f"{self.interface_word} {change.port}", *self.port_lines(change), "exit"]
        return cmds

    def port_lines(self, change: PortConfig) -> list[str]:
        if change.shut_only:
            return ["shutdown"]
        if change.mode == "access":
            lines = ["switchport mode access", f"switchport access vlan {change.vlan}"]
        else:
            lines = ["switchport mode trunk", *self.native_lines(change)]
            allowed = vlan_list(change.trunk_vlans) or "none"
            lines.append(f"switchport trunk allowed vlan {allowed}")
        lines.append("no shutdown" if change.enabled else "shutdown")
        return lines

    def native_lines(self, change: PortConfig) -> list[str]:
        if change.vlan is None:
            return ["no switchport trunk native vlan"]
        return [f"switchport trunk native vlan {change.vlan}"]

    # -- reading -----------------------------------------------------------------------

    def read_commands(self, ports: Sequence[str], settings: dict[str, Any]) -> list[str]:
        return [self.show_config.format(port=p) for p in ports]

    def parse(self, ports: Sequence[str], outputs: Sequence[str]) -> dict[str, PortConfig]:
        return {p: self.parse_port(p, out) for p, out in zip(ports, outputs, strict=True)}

    def parse_port(self, port: str, text: str) -> PortConfig:
        mode, access, native, allowed, enabled = "access", 1, None, None, True
        for raw in text.splitlines():
            line = raw.strip()
            if m := re.fullmatch(r"switchport mode (access|trunk)", line):
                mode = m.group(1)
            elif m := re.fullmatch(r"switchport access vlan (\d+)", line):
                access = int(m.group(1))
            elif m := re.fullmatch(r"switchport trunk native vlan (\d+)", line):
                native = int(m.group(1))
            elif m := re.fullmatch(r"switchport trunk allowed vlan (add )?(.+)", line):
                found = parse_vlan_list(m.group(2))
                allowed = (*(allowed or ()), *found) if m.group(1) else found
            elif line == "shutdown":
                enabled = False
        if mode == "access":
            return PortConfig(port, "access", access, enabled=enabled)
        trunk = allowed if allowed is not None else tuple(range(1, 4095))
        return PortConfig(port, "trunk", self.native_of(native, access), trunk, enabled)

    def native_of(self, native: int | None, access: int) -> int | None:
        return native if native is not None else 1  # IOS: native defaults to VLAN 1


@dataclass(frozen=True)
class DellOS10(CommandSet):
    """OS10: a trunk's untagged (native) VLAN is its ``switchport access vlan``."""

    def native_lines(self, change: PortConfig) -> list[str]:
        if change.vlan is None:
            return ["no switchport access vlan"]
        return [f"switchport access vlan {change.vlan}"]

    def native_of(self, native: int | None, access: int) -> int | None:
        return access


@dataclass(frozen=True)
class Junos(CommandSet):
    """Junos (ELS): ``set``/``delete`` statements, then ``commit`` (no separate save)."""

    error_pattern: str = r"syntax error|unknown command|error:|invalid"
    enable: bool = False
    exit_config: str | None = None
    commit: bool = True
    save: bool = False
    create_vlans: bool = False  # VLANs are named objects the network team defines
    show_config: str = "show configuration interfaces {port} | display set"

    def render(self, changes: Sequence[PortConfig], settings: dict[str, Any]) -> list[str]:
        cmds: list[str] = []
        for c in changes:
            unit = f"set interfaces {c.port} unit 0 family ethernet-switching"
            if not c.shut_only:
                cmds.append(f"delete interfaces {c.port} unit 0 family ethernet-switching vlan")
                cmds.append(f"delete interfaces {c.port} native-vlan-id")
                if c.mode == "access":
                    cmds += [f"{unit} interface-mode access", f"{unit} vlan members {c.vlan}"]
                else:
                    cmds.append(f"{unit} interface-mode trunk")
                    cmds += [f"{unit} vlan members {v}" for v in c.trunk_vlans]
                    if c.vlan is not None:
                        cmds.append(f"set interfaces {c.port} native-vlan-id {c.vlan}")
            verb = "delete" if c.enabled else "set"
            cmds.append(f"{verb} interfaces {c.port} disable")
        return cmds

    def parse_port(self, port: str, text: str) -> PortConfig:
        mode, native, enabled = "access", None, True
        members: list[int] = []
        for line in text.splitlines():
            words = line.split()
            if len(words) < 3 or words[0] != "set" or words[2] != port:
                continue
            rest = " ".join(words[3:])
            if m := re.search(r"interface-mode (access|trunk)$", rest):
                mode = m.group(1)
            elif m := re.search(r"vlan members (\S+)$", rest):
                members.extend(parse_vlan_list(m.group(1)))
            elif m := re.fullmatch(r"native-vlan-id (\d+)", rest):
                native = int(m.group(1))
            elif rest == "disable":
                enabled = False
        if mode == "access":
            return PortConfig(port, "access", members[0] if members else None, enabled=enabled)
        return PortConfig(port, "trunk", native, tuple(members), enabled)


@dataclass(frozen=True)
class Cumulus(CommandSet):
    """Cumulus Linux NCLU: ``net add``/``net del``, then ``net commit``."""

    error_pattern: str = r"ERROR:|Error:|not a valid|Unknown command"
    enable: bool = False
    config_mode: bool = False
    commit: bool = True
    save: bool = False
    create_vlans: bool = False
    show_config: str = "net show configuration commands"

    def render(self, changes: Sequence[PortConfig], settings: dict[str, Any]) -> list[str]:
        cmds: list[str] = []
        for c in changes:
            iface = f"interface {c.port}"
            if not c.shut_only:
                cmds += [
                    f"net del {iface} bridge access",
                    f"net del {iface} bridge vids",
                    f"net del {iface} bridge pvid",
                ]
                if c.mode == "access":
                    cmds.append(f"net add {iface} bridge access {c.vlan}")
                else:
                    cmds.append(f"net add {iface} bridge vids {vlan_list(c.trunk_vlans)}")
                    if c.vlan is not None:
                        cmds.append(f"net add {iface} bridge pvid {c.vlan}")
            cmds.append(f"net {'del' if c.enabled else 'add'} {iface} link down")
        return cmds

    def read_commands(self, ports: Sequence[str], settings: dict[str, Any]) -> list[str]:
        return [self.show_config]  # one listing for every port

    def parse(self, ports: Sequence[str], outputs: Sequence[str]) -> dict[str, PortConfig]:
        return {p: self.parse_port(p, outputs[0]) for p in ports}

    def parse_port(self, port: str, text: str) -> PortConfig:
        access = pvid = None
        vids: tuple[int, ...] = ()
        enabled = True
        prefix = f"net add interface {port} "
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith(prefix):
                continue
            rest = line[len(prefix) :]
            if m := re.fullmatch(r"bridge access (\d+)", rest):
                access = int(m.group(1))
            elif m := re.fullmatch(r"bridge vids (\S+)", rest):
                vids = parse_vlan_list(m.group(1))
            elif m := re.fullmatch(r"bridge pvid (\d+)", rest):
                pvid = int(m.group(1))
            elif rest == "link down":
                enabled = False
        if access is not None or not vids:
            return PortConfig(port, "access", access or 1, enabled=enabled)
        return PortConfig(port, "trunk", pvid, vids, enabled)


@dataclass(frozen=True)
class OvsLinux(CommandSet):
    """A Linux host running Open vSwitch (netmiko ``ovs_linux``): the batch is one
    ovs-vsctl transaction plus ``ovs-ofctl mod-port`` per port, in one shell line that
    ends by printing its exit status (the shell mixes stderr into the output)."""

    error_pattern: str = r"ovs-vsctl: |ovs-ofctl: |command not found"
    enable: bool = False
    config_mode: bool = False
    save: bool = False  # OVSDB is persistent
    create_vlans: bool = False
    expect_string: str | None = r"bms-rc=\d+[^\n]*\n[^\n]*[#$]"

    def render(self, changes: Sequence[PortConfig], settings: dict[str, Any]) -> list[str]:
        timeout = float(settings.get("timeout") or 30)
        commands = ovscmd.apply_commands(settings, timeout, changes)
        return [shell_line(commands)]

    def read_commands(self, ports: Sequence[str], settings: dict[str, Any]) -> list[str]:
        timeout = float(settings.get("timeout") or 30)
        return [shell_line([ovscmd.read_command(settings, timeout, ports)])]

    def parse(self, ports: Sequence[str], outputs: Sequence[str]) -> dict[str, PortConfig]:
        return ovscmd.parse_read(outputs[0], ports)


def shell_line(commands: Sequence[Sequence[str]]) -> str:
    import shlex

    return " && ".join(shlex.join(argv) for argv in commands) + "; echo bms-rc=$?"


COMMAND_SETS: dict[str, CommandSet] = {
    s.name: s
    for s in (
        CommandSet("cisco_ios", "cisco_ios"),
        CommandSet("cisco_nxos", "cisco_nxos", exit_config="end"),
        CommandSet("arista_eos", "arista_eos", show_config="show running-config interfaces {port}"),
        DellOS10(
            "dell_os10", "dell_os10", show_config="show running-configuration interface {port}"
        ),
        Junos("juniper_junos", "juniper_junos"),
        Cumulus("cumulus", "linux"),
        OvsLinux("ovs_linux", "ovs_linux"),
    )
}
