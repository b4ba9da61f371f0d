"""The ``fake`` switch driver: state, sessions and batches recorded, failure injection,
a state file shared by separate processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError
from workers.switches.fake import read_state
from workers.switches.registry import get_switch_driver


def conn(**settings: object) -> SwitchConn:
    return SwitchConn("s1", "leaf1", "fake", None, settings=dict(settings))


def test_in_memory_apply_read_and_batches() -> None:
    driver = get_switch_driver("fake")
    c = conn()
    with driver.session(c) as s:
        assert s.read(["p1"]) == {"p1": PortConfig("p1", "access", 1)}  # factory default
        s.apply([PortConfig("p1", "access", 100), PortConfig("p2", "trunk", None, (5, 6))])
        s.apply([PortConfig("p1", "access", None, enabled=False)])
        assert s.read(["p1", "p2"]) == {
            "p1": PortConfig("p1", "access", 100, enabled=False),  # shut, VLAN kept
            "p2": PortConfig("p2", "trunk", None, (5, 6)),
        }
    state = driver.memory["s1"]  # type: ignore[attr-defined]
    assert state["sessions"] == 1 and len(state["batches"]) == 2
    assert get_switch_driver("fake").memory == {}  # type: ignore[attr-defined]  # per object


def _worker(path: str, port: str) -> None:
    driver = get_switch_driver("fake")
    with driver.session(conn(state_file=path)) as s:
        s.apply([PortConfig(port, "access", 200)])


def test_state_file_is_shared_by_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "switch.json")
    procs = [multiprocessing.Process(target=_worker, args=(path, f"p{i}")) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    state = read_state(path)
    assert state["sessions"] == 6 and len(state["batches"]) == 6
    assert sorted(state["ports"]) == [f"p{i}" for i in range(6)]
    with get_switch_driver("fake").session(conn(state_file=path)) as s:
        assert s.read(["p3"])["p3"] == PortConfig("p3", "access", 200)


@pytest.mark.parametrize(
    ("fail", "kind"), [("auth", ErrorKind.AUTH), ("unreachable", ErrorKind.UNREACHABLE)]
)
def test_login_failures(fail: str, kind: str) -> None:
    with pytest.raises(SwitchError) as err, get_switch_driver("fake").session(conn(fail=fail)):
        pass
    assert err.value.kind == kind


def test_rejections_change_nothing() -> None:
    driver = get_switch_driver("fake")
    c = conn(reject_ports=["uplink*"], ports=["p1", "p2", "uplink1"])
    with driver.session(c) as s:
        with pytest.raises(SwitchError, match="uplink1, zz") as err:
            s.apply(
                [
                    PortConfig("p1", "access", 7),
                    PortConfig("uplink1", "access", 7),
                    PortConfig("zz", "access", 7),
                ]
            )
        assert err.value.kind == ErrorKind.REJECTED
        assert s.read(["p1"])["p1"].vlan == 1
        with pytest.raises(SwitchError, match="no port zz"):
            s.read(["zz"])
    with driver.session(conn(fail="rejected")) as s, pytest.raises(SwitchError) as err:
        s.apply([PortConfig("p1", "access", 7)])
    assert err.value.kind == ErrorKind.REJECTED


def test_validate() -> None:
    driver = get_switch_driver("fake")
    driver.validate(conn(fail="auth"))
    with pytest.raises(SwitchError, match=r"settings\.fail") as err:
        driver.validate(conn(fail="sometimes"))
    assert err.value.kind == ErrorKind.INVALID
