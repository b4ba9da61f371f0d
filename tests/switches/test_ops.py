"""push(): rails first, one session per batch, read-back verified; drift()."""

from __future__ import annotations

import pytest

from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError
from workers.switches.ops import coalesce, drift, push
from workers.switches.registry import get_switch_driver


def conn(**settings: object) -> SwitchConn:
    return SwitchConn("s1", "leaf1", "fake", None, settings=dict(settings))


def test_n_changes_one_session_last_change_per_port_wins() -> None:
    driver = get_switch_driver("fake")
    changes = [PortConfig(f"p{i}", "access", 100 + i) for i in range(50)] + [
        PortConfig("p0", "access", 999)
    ]
    actual = push(driver, conn(), changes)
    state = driver.memory["s1"]  # type: ignore[attr-defined]
    assert state["sessions"] == 1 and len(state["batches"]) == 1 and len(state["batches"][0]) == 50
    assert actual["p0"] == PortConfig("p0", "access", 999)


def test_rails_refuse_before_any_login() -> None:
    driver = get_switch_driver("fake")
    with pytest.raises(SwitchError, match="uplink is protected") as err:
        push(
            driver,
            conn(protected_ports=["uplink"]),
            [PortConfig("p1", "access", 5), PortConfig("uplink", "access", 5)],
        )
    assert err.value.kind == ErrorKind.REJECTED
    assert driver.memory == {}  # type: ignore[attr-defined]  # never logged in


def test_drift() -> None:
    wanted = {
        "a": PortConfig("a", "access", 5),
        "b": PortConfig("b", "access", None, enabled=False),
        "c": PortConfig("c", "access", 7),
    }
    actual = {"a": PortConfig("a", "access", 6), "b": PortConfig("b", "access", 3, enabled=False)}
    assert drift(wanted, actual) == [wanted["a"], wanted["c"]]
    assert coalesce([PortConfig("a", "access", 1), PortConfig("a", "access", 2)]) == [
        PortConfig("a", "access", 2)
    ]
