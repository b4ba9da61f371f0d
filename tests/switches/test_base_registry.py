"""The interface's data types, the registry, secret handling and the per-switch lock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workers.drivers.base import DriverError, ErrorKind
from workers.switches.base import PortConfig, SwitchConn, SwitchError, classified
from workers.switches.locks import switch_lock
from workers.switches.registry import get_switch_driver, secret_fields, switch_drivers

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"


def test_portconfig_is_canonical_and_checked() -> None:
    assert PortConfig("p", "trunk", 5, (30, 10, 10)).trunk_vlans == (10, 30)
    for bad in (
        lambda: PortConfig("p", "access", None),
        lambda: PortConfig("p", "access", 5000),
        lambda: PortConfig("p", "access", 5, (6,)),
        lambda: PortConfig("has space", "access", 5),
        lambda: PortConfig("p", "hybrid", 5),  # type: ignore[arg-type]
        lambda: PortConfig("p", "access", True),  # type: ignore[arg-type]
    ):
        with pytest.raises(SwitchError) as err:
            bad()
        assert err.value.kind == ErrorKind.INVALID
    shut = PortConfig("p", "access", None, enabled=False)
    assert shut.matches(PortConfig("p", "access", 77, enabled=False))
    assert not shut.matches(PortConfig("p", "access", 77))
    assert PortConfig("p", "access", 5).matches(PortConfig("p", "access", 5))


def test_switch_error_is_a_driver_error_and_survives_pickling() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(SwitchError("refused", ErrorKind.REJECTED)))
    assert isinstance(err, DriverError) and err.kind == "rejected" == ErrorKind.REJECTED


def test_conn_repr_and_errors_never_show_secrets() -> None:
    conn = SwitchConn(
        "s1",
        "leaf",
        "netmiko",
        "10.0.0.1",
        username="admin",
        password="hunter2-pw",
        private_key=KEY,
        settings={"secret": "enable-pw", "bridge": "br0"},
    )
    text = repr(conn) + str(conn)
    for secret in ("hunter2-pw", "enable-pw", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"):
        assert secret not in text
    assert "******" in text and "br0" in text
    with pytest.raises(SwitchError) as err, classified(conn, "login"):
        raise RuntimeError(
            "login hunter2-pw failed with enable-pw and key b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
        )
    assert "hunter2-pw" not in str(err.value) and "enable-pw" not in str(err.value)
    assert "b3BlbnNzaC1rZXkt" not in str(err.value)
    assert err.value.kind == ErrorKind.ERROR


def test_registry() -> None:
    assert switch_drivers() == ["fake", "netmiko", "ovs"]
    assert {get_switch_driver(n).name for n in switch_drivers()} == {"fake", "netmiko", "ovs"}
    with pytest.raises(SwitchError, match="enabled: fake, netmiko, ovs") as err:
        get_switch_driver("cisco")
    assert err.value.kind == ErrorKind.UNSUPPORTED
    assert {"password", "private_key", "secret"} <= secret_fields()


def test_base_imports_no_implementation() -> None:
    code = "import sys, workers.switches.base, workers.switches.registry; print([m for m in sys.modules if m.startswith('workers.switches.') or m == 'netmiko'])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert eval(out) == ["workers.switches.base", "workers.switches.registry"] or set(
        eval(out)
    ) == {"workers.switches.base", "workers.switches.registry"}


def test_switch_lock_serialises_holders(tmp_path: Path) -> None:
    conn = SwitchConn(
        "sw/1", "leaf", "fake", None, settings={"lock_dir": str(tmp_path), "timeout": 5}
    )
    order: list[str] = []

    def hold(name: str) -> None:
        with switch_lock(conn):
            order.append(f"{name}+")
            time.sleep(0.2)
            order.append(f"{name}-")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
    with switch_lock(conn), pytest.raises(SwitchError) as err, switch_lock(conn, timeout=0.1):
        pass
    assert err.value.kind == ErrorKind.TRANSIENT
