"""Fixtures for the switch driver tests: one real Open vSwitch (userspace datapath) and one
real sshd per module, shared; veth ports named per process so parallel runs never clash.

Tests that need root, Open vSwitch or sshd skip when those are missing, unless
BMS_REQUIRE_SWITCH=1 (CI) turns that into a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netboot.lab import ovs as ovs_lab
from netboot.lab import sshd as sshd_lab
from netboot.lab.ovs import OvsLab
from netboot.lab.sshd import SshdLab

# Its own name per test process: a bridge is a device of the namespace OVS runs in.
BRIDGE = f"sb{os.getpid() % 100000}"


def require(missing: list[str], what: str) -> None:
    if not missing:
        return
    message = f"{what} needs {', '.join(missing)}"
    if os.environ.get("BMS_REQUIRE_SWITCH") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Lab:
    ovs: OvsLab
    sshd: SshdLab
    prefix: str
    ports: list[str] = field(default_factory=list)

    def port(self, i: int) -> str:
        return f"{self.prefix}p{i}"

    def settings(self, **extra: object) -> dict[str, object]:
        return {"bridge": BRIDGE, "ovsdb": str(self.ovs.db_sock), **extra}

    def tag(self, port: str) -> str:
        return self.ovs.vsctl("get", "port", port, "tag").strip()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require(ovs_lab.missing() + sshd_lab.missing(), "the real switch lab")
    base = tmp_path_factory.mktemp("sw")
    prefix = f"s{os.getpid() % 100000}"
    ovs = OvsLab(base / "ovs")
    sshd = SshdLab(base / "sshd")
    created: list[str] = []
    try:
        ovs.start()
        ovs.add_bridge(BRIDGE)
        sshd.start()
        the_lab = Lab(ovs, sshd, prefix)
        for i in range(8):  # veth pairs: the "p" end is the switch port, "x" the host's NIC
            name = the_lab.port(i)
            _ip("link", "add", name, "type", "veth", "peer", "name", f"{prefix}x{i}")
            created.append(name)
            _ip("link", "set", name, "up")
            ovs.vsctl("add-port", BRIDGE, name)
            the_lab.ports.append(name)
        yield the_lab
    finally:
        for name in created:
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=20)
        sshd.stop()
        ovs.stop()


@pytest.fixture
def reset_ports(lab: Lab) -> Lab:
    """Every port back to access VLAN 1 and up, before each test."""
    args: list[str] = []
    for p in lab.ports:
        args += [
            *(["--"] if args else []),
            "set",
            "port",
            p,
            "tag=1",
            "vlan_mode=access",
            "trunks=[]",
        ]
    lab.ovs.vsctl(*args)
    for p in lab.ports:
        lab.ovs.ofctl("mod-port", lab.ovs.mgmt(BRIDGE), p, "up")
    return lab


def ovs_root_ok() -> list[str]:
    return ovs_lab.missing()


@pytest.fixture
def tmp_lock_dir(tmp_path: Path) -> Path:
    return tmp_path
