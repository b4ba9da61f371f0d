"""The netmiko driver's IOS-style command sets against fake-switches' stateful Cisco CLI
(over SSH): apply a batch, read the VLAN config back from the simulator.

fake-switches' other CLIs do not serve here: its Arista CLI lacks ``switchport mode access``
and ``shutdown``, its Juniper speaks NETCONF only, its Dell is PowerConnect (not OS10) and
refuses netmiko's login. Those command sets are covered by exact-text tests
(test_vendor_commands.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netboot.lab.procs import poll_until
from netboot.lab.sshd import free_port
from tests.switches.conftest import require
from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError
from workers.switches.registry import get_switch_driver

ROOT = Path(__file__).resolve().parents[2]


def _have_fake_switches() -> list[str]:
    try:
        import fake_switches  # noqa: F401
        import twisted.conch  # noqa: F401
    except ImportError:
        return ["fake-switches (pip install --no-deps fake-switches==1.5.0)"]
    return []


@pytest.fixture(scope="module")
def cisco(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    require(_have_fake_switches(), "the switch simulator tests")
    port = free_port()
    log = tmp_path_factory.mktemp("sim") / "cisco.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.switches.fakeswitch_server", "cisco_generic", str(port), "admin", "s3cret-pw"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    try:
        poll_until(lambda: "listening" in log.read_text(), timeout=20, what="simulator")
        yield port
    finally:
        proc.kill()
        proc.wait(10)


def conn(port: int, device_type: str = "cisco_ios", **overrides: object) -> SwitchConn:
    c = SwitchConn(
        "sim1", "sim-cisco", "netmiko", "127.0.0.1", port=port, username="admin",
        password="s3cret-pw", device_type=device_type,
        # The simulator knows no `end`: leave config mode with `exit`.
        settings={"exit_config": "exit", "timeout": 10},
    )  # fmt: skip
    for k, v in overrides.items():
        setattr(c, k, v)
    return c


@pytest.mark.parametrize("device_type", ["cisco_ios", "cisco_nxos"])
def test_batch_applied_and_read_back_from_the_simulator(cisco: int, device_type: str) -> None:
    driver = get_switch_driver("netmiko")
    c = conn(cisco, device_type)
    if device_type == "cisco_nxos":  # the simulator answers NX-OS's save differently
        c.settings["save_config"] = False
    driver.validate(c)
    base = 1 if device_type == "cisco_ios" else 5
    changes = [
        PortConfig(f"FastEthernet0/{base}", "access", 100),
        PortConfig(f"FastEthernet0/{base + 1}", "trunk", 100, (100, 200, 201, 202)),
        PortConfig(f"FastEthernet0/{base + 2}", "access", 300, enabled=False),
        PortConfig(f"FastEthernet0/{base + 3}", "access", None, enabled=False),
    ]
    with driver.session(c) as session:
        session.apply(changes)
        actual = session.read([ch.port for ch in changes])
    assert actual[changes[0].port] == changes[0]
    assert actual[changes[1].port] == changes[1]
    assert actual[changes[2].port] == changes[2]
    assert not actual[changes[3].port].enabled


def test_a_refused_command_is_rejected(cisco: int) -> None:
    driver = get_switch_driver("netmiko")
    with driver.session(conn(cisco)) as session, pytest.raises(SwitchError) as err:
        session.apply([PortConfig("NoSuchInterface9/9", "access", 100)])
    assert err.value.kind == ErrorKind.REJECTED, str(err.value)


def test_wrong_password_is_auth_and_never_echoed(cisco: int) -> None:
    with (
        pytest.raises(SwitchError) as err,
        get_switch_driver("netmiko").session(conn(cisco, password="wrong-pw-123")),
    ):
        pass
    assert err.value.kind == ErrorKind.AUTH
    assert "wrong-pw-123" not in str(err.value)
