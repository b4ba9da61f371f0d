"""The ``ovs`` and netmiko ``ovs_linux`` drivers against a REAL Open vSwitch (userspace
datapath) and a REAL OpenSSH server: batches applied, read back with ovs-vsctl, one login
and one ovs-vsctl transaction per batch, classified errors, and packets."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.switches.conftest import BRIDGE, Lab
from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError
from workers.switches.registry import get_switch_driver


def local_conn(lab: Lab, **settings: object) -> SwitchConn:
    return SwitchConn("sw-local", "ovs-local", "ovs", None, settings=lab.settings(**settings))


def ssh_conn(lab: Lab, driver: str = "ovs", **overrides: object) -> SwitchConn:
    conn = SwitchConn(
        "sw-ssh",
        "ovs-ssh",
        driver,
        "127.0.0.1",
        port=lab.sshd.port,
        username="root",
        private_key=lab.sshd.client_key,
        device_type="ovs_linux" if driver == "netmiko" else None,
        settings=lab.settings(known_hosts=str(lab.sshd.known_hosts), timeout=15),
    )
    for key, value in overrides.items():
        setattr(conn, key, value)
    return conn


def batch(lab: Lab) -> list[PortConfig]:
    return [
        PortConfig(lab.port(0), "access", 100),
        PortConfig(lab.port(1), "trunk", 100, (100, 200)),
        PortConfig(lab.port(2), "trunk", None, (300, 301)),
        PortConfig(lab.port(3), "access", 400, enabled=False),
    ]


def assert_on_switch(lab: Lab) -> None:
    """Read back with ovs-vsctl itself, not with the driver under test."""
    vsctl = lab.ovs.vsctl
    assert vsctl("get", "port", lab.port(0), "tag", "vlan_mode", "trunks").split() == [
        "100",
        "access",
        "[]",
    ]
    assert vsctl("get", "port", lab.port(1), "tag", "vlan_mode", "trunks").split() == [
        "100",
        "native-untagged",
        "[100,",
        "200]",
    ]
    assert vsctl("get", "port", lab.port(2), "tag", "vlan_mode", "trunks").split() == [
        "[]",
        "trunk",
        "[300,",
        "301]",
    ]
    assert vsctl("get", "port", lab.port(3), "tag").strip() == "400"
    assert vsctl("get", "interface", lab.port(3), "admin_state").strip() == "down"
    assert vsctl("get", "interface", lab.port(0), "admin_state").strip() == "up"


@pytest.fixture
def vsctl_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Wrap ovs-vsctl on PATH to count invocations (the local driver's transactions)."""
    log = tmp_path / "vsctl.log"
    wrapper = tmp_path / "bin" / "ovs-vsctl"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec /usr/bin/ovs-vsctl "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    return log


def test_local_batch_is_one_vsctl_transaction_and_reads_back(
    reset_ports: Lab, vsctl_log: Path
) -> None:
    lab = reset_ports
    driver = get_switch_driver("ovs")
    conn = local_conn(lab)
    driver.validate(conn)
    with driver.session(conn) as session:
        session.apply(batch(lab))
        calls = vsctl_log.read_text().splitlines()
        assert len(calls) == 1, calls  # the whole batch in one ovs-vsctl transaction
        assert calls[0].count(" -- set port ") == 3
        actual = session.read([c.port for c in batch(lab)])
    assert_on_switch(lab)
    want = batch(lab)
    assert [actual[c.port] for c in want] == want


def test_shut_only_keeps_the_vlan_and_enable_brings_the_port_up(reset_ports: Lab) -> None:
    lab = reset_ports
    driver = get_switch_driver("ovs")
    conn = local_conn(lab)
    port = lab.port(4)
    with driver.session(conn) as session:
        session.apply([PortConfig(port, "access", 150)])
        session.apply([PortConfig(port, "access", None, enabled=False)])
        state = session.read([port])[port]
        assert (state.vlan, state.enabled) == (150, False)
        session.apply([PortConfig(port, "access", 150)])
        assert session.read([port])[port] == PortConfig(port, "access", 150)
    assert lab.ovs.vsctl("get", "interface", port, "admin_state").strip() == "up"


@pytest.mark.parametrize("driver_name", ["ovs", "netmiko"])
def test_over_ssh_a_batch_is_one_login(reset_ports: Lab, driver_name: str) -> None:
    lab = reset_ports
    driver = get_switch_driver(driver_name)
    conn = ssh_conn(lab, driver_name)
    driver.validate(conn)
    before = lab.sshd.logins()
    started = time.monotonic()
    with driver.session(conn) as session:
        session.apply(batch(lab))
        actual = session.read([c.port for c in batch(lab)])
    elapsed = time.monotonic() - started
    assert lab.sshd.logins() - before == 1  # apply + read, one SSH login
    assert_on_switch(lab)
    assert [actual[c.port] for c in batch(lab)] == batch(lab)
    assert elapsed < 15


def _ns(name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv],
        capture_output=True,
        text=True,
        timeout=20,
        check=check,
    )


def _ping(ns: str, address: str) -> bool:
    return _ns(ns, "busybox", "ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


def test_packets_follow_the_vlans_the_driver_sets(lab: Lab) -> None:
    """Three hosts on ports 5-7: same VLAN pings, other VLAN does not, re-tagging over SSH
    (netmiko ovs_linux) lets it through."""
    hosts = [f"{lab.prefix}n{i}" for i in range(3)]
    ports = [lab.port(5 + i) for i in range(3)]
    try:
        for i, ns in enumerate(hosts):
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=20)
            nic = f"{lab.prefix}x{5 + i}"
            subprocess.run(["ip", "link", "set", nic, "netns", ns], check=True, timeout=20)
            _ns(ns, "ip", "addr", "add", f"10.231.0.{i + 1}/24", "dev", nic)
            _ns(ns, "ip", "link", "set", nic, "up")
            _ns(ns, "ip", "link", "set", "lo", "up")
        driver = get_switch_driver("netmiko")
        conn = ssh_conn(lab, "netmiko")
        with driver.session(conn) as session:
            session.apply(
                [
                    PortConfig(ports[0], "access", 100),
                    PortConfig(ports[1], "access", 100),
                    PortConfig(ports[2], "access", 200),
                ]
            )
        deadline = time.monotonic() + 5
        while not _ping(hosts[0], "10.231.0.2") and time.monotonic() < deadline:
            pass
        assert _ping(hosts[0], "10.231.0.2")
        assert not _ping(hosts[0], "10.231.0.3")
        assert not _ping(hosts[2], "10.231.0.2")
        with driver.session(conn) as session:
            session.apply([PortConfig(ports[2], "access", 100)])
        deadline = time.monotonic() + 5
        while not _ping(hosts[0], "10.231.0.3") and time.monotonic() < deadline:
            pass
        assert _ping(hosts[0], "10.231.0.3")
    finally:
        for ns in hosts:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        # Deleting a namespace destroys the veth end in it and so its peer: recreate them.
        for i in range(3):
            name = lab.port(5 + i)
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=20)
            subprocess.run(
                [
                    "ip",
                    "link",
                    "add",
                    name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"{lab.prefix}x{5 + i}",
                ],
                check=True,
                timeout=20,
            )
            subprocess.run(["ip", "link", "set", name, "up"], check=True, timeout=20)


@pytest.mark.parametrize("driver_name", ["ovs", "netmiko"])
def test_wrong_key_or_password_is_auth(lab: Lab, driver_name: str, tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    other_key = (tmp_path / "k").read_text()
    driver = get_switch_driver(driver_name)
    for overrides in (
        {"private_key": other_key},
        {"private_key": None, "password": "not-the-password"},
    ):
        conn = ssh_conn(lab, driver_name, **overrides)
        with pytest.raises(SwitchError) as err, driver.session(conn):
            pass
        assert err.value.kind == ErrorKind.AUTH, str(err.value)
        assert "not-the-password" not in str(err.value) and "PRIVATE KEY" not in str(err.value)


@pytest.mark.parametrize("driver_name", ["ovs", "netmiko"])
def test_closed_port_is_unreachable(lab: Lab, driver_name: str) -> None:
    from netboot.lab.sshd import free_port

    conn = ssh_conn(lab, driver_name, port=free_port())
    with pytest.raises(SwitchError) as err, get_switch_driver(driver_name).session(conn):
        pass
    assert err.value.kind == ErrorKind.UNREACHABLE, str(err.value)


@pytest.mark.parametrize("driver_name", ["ovs-local", "ovs", "netmiko"])
def test_unknown_port_is_rejected_and_nothing_changes(reset_ports: Lab, driver_name: str) -> None:
    lab = reset_ports
    conn = local_conn(lab) if driver_name == "ovs-local" else ssh_conn(lab, driver_name)
    driver = get_switch_driver(conn.driver)
    with driver.session(conn) as session:
        with pytest.raises(SwitchError) as err:
            session.apply(
                [PortConfig(lab.port(0), "access", 120), PortConfig("nosuchport", "access", 120)]
            )
        assert err.value.kind == ErrorKind.REJECTED, str(err.value)
        assert "nosuchport" in str(err.value)
        with pytest.raises(SwitchError) as err:
            session.read(["nosuchport"])
        assert err.value.kind == ErrorKind.REJECTED
    assert lab.tag(lab.port(0)) == "1"  # one transaction: the good change did not land either


def test_local_database_down_is_unreachable(tmp_path: Path, lab: Lab) -> None:
    conn = SwitchConn(
        "x",
        "gone",
        "ovs",
        None,
        settings={"bridge": BRIDGE, "ovsdb": str(tmp_path / "no.sock"), "timeout": 2},
    )
    with get_switch_driver("ovs").session(conn) as session, pytest.raises(SwitchError) as err:
        session.read(["p1"])
    assert err.value.kind == ErrorKind.UNREACHABLE, str(err.value)


def test_switch_in_a_namespace_driven_over_ssh_and_locally(tmp_path: Path, lab: Lab) -> None:
    """The QEMU lab's shape: OVS and sshd inside a switch namespace, reached over a veth;
    the netmiko driver changes a port over SSH, the local driver reads it via ``netns``."""
    from netboot.lab.ovs import OvsLab
    from netboot.lab.sshd import SshdLab

    ns, host_if, ns_if = f"{lab.prefix}sw", f"{lab.prefix}r", f"{lab.prefix}s"
    ovs = OvsLab(tmp_path / "ovs", netns=ns)
    sshd = SshdLab(tmp_path / "sshd", address="10.232.0.2", port=2222, netns=ns)
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=20)
        subprocess.run(
            ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns],
            check=True,
            timeout=20,
        )
        subprocess.run(
            ["ip", "addr", "add", "10.232.0.1/30", "dev", host_if], check=True, timeout=20
        )
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True, timeout=20)
        _ns(ns, "ip", "addr", "add", "10.232.0.2/30", "dev", ns_if)
        _ns(ns, "ip", "link", "set", ns_if, "up")
        _ns(ns, "ip", "link", "set", "lo", "up")
        _ns(ns, "ip", "link", "add", "tap0", "type", "veth", "peer", "name", "tap0x")
        ovs.start()
        ovs.add_bridge(BRIDGE)
        ovs.vsctl("add-port", BRIDGE, "tap0")
        sshd.start()
        settings = {
            "bridge": BRIDGE,
            "ovsdb": str(ovs.db_sock),
            "known_hosts": str(sshd.known_hosts),
            "timeout": 15,
        }
        remote = SwitchConn(
            "ns-sw",
            "ns-switch",
            "netmiko",
            "10.232.0.2",
            port=2222,
            username="root",
            private_key=sshd.client_key,
            device_type="ovs_linux",
            settings=settings,
        )
        with get_switch_driver("netmiko").session(remote) as session:
            session.apply([PortConfig("tap0", "trunk", 10, (10, 20))])
        assert sshd.logins() == 1
        local = SwitchConn(
            "ns-sw2",
            "ns-local",
            "ovs",
            None,
            settings={"bridge": BRIDGE, "ovsdb": str(ovs.db_sock), "netns": ns},
        )
        with get_switch_driver("ovs").session(local) as session:
            assert session.read(["tap0"])["tap0"] == PortConfig(
                "tap0", "trunk", 10, (10, 20), enabled=True
            )
    finally:
        sshd.stop()
        ovs.stop()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
