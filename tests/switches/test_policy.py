"""The safety rails: VLAN ranges, protected/allowed ports, allowed VLANs, parking."""

from __future__ import annotations

import pytest

from workers.switches import policy
from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError


def conn(**settings: object) -> SwitchConn:
    return SwitchConn("s1", "leaf1", "fake", None, settings=dict(settings))


def test_parse_vlan_ranges() -> None:
    assert policy.parse_vlan_ranges("100-999, 1000") == [(100, 999), (1000, 1000)]
    assert policy.parse_vlan_ranges("7") == [(7, 7)]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "must be text"),
        ("abc", "'abc'"),
        ("10-", "'10-'"),
        ("0-5", "outside"),
        ("4095", "outside"),
        ("300-200", "backwards"),
        ("1,,2", "''"),
    ],
)
def test_parse_vlan_ranges_errors_name_the_piece(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named) as err:
        policy.parse_vlan_ranges(text)
    assert isinstance(err.value, SwitchError) and err.value.kind == ErrorKind.INVALID


def test_check_refuses_and_names_every_bad_port_and_vlan() -> None:
    c = conn(
        allowed_ports=["Ethernet1/*"],
        protected_ports=["Ethernet1/48"],
        allowed_vlans="100-199",
        provisioning_vlan=10,
        quarantine_vlan=4000,
    )
    ok = [
        PortConfig("Ethernet1/1", "access", 150),
        PortConfig("Ethernet1/2", "access", 10),  # provisioning: always allowed
        PortConfig("Ethernet1/3", "access", 4000),  # quarantine: always allowed
        PortConfig("Ethernet1/4", "trunk", 100, (100, 199)),
        PortConfig("Ethernet1/5", "access", None, enabled=False),
    ]
    policy.check(c, ok)
    bad = [
        *ok,
        PortConfig("Ethernet1/48", "access", 150),
        PortConfig("Ethernet2/1", "access", 150),
        PortConfig("Ethernet1/6", "trunk", 1, (150, 300, 301)),
    ]
    with pytest.raises(SwitchError) as err:
        policy.check(c, bad)
    msg = str(err.value)
    assert err.value.kind == ErrorKind.REJECTED
    assert "Ethernet1/48 is protected" in msg
    assert "Ethernet2/1 is not in allowed_ports" in msg
    assert "Ethernet1/6: VLAN 1, 300, 301 not in allowed_vlans" in msg
    assert "Ethernet1/1" not in msg


def test_without_allowlists_everything_but_protected_ports_is_allowed() -> None:
    policy.check(conn(), [PortConfig("xe-0/0/1", "access", 4094)])
    with pytest.raises(SwitchError, match="uplink is protected"):
        policy.check(conn(protected_ports="uplink"), [PortConfig("uplink", "access", 5)])


def test_parking_is_quarantine_or_shut_never_the_default_vlan() -> None:
    assert policy.parking(conn(quarantine_vlan=999), "p1") == PortConfig("p1", "access", 999)
    parked = policy.parking(conn(), "p1")
    assert parked == PortConfig("p1", "access", None, enabled=False)
    assert parked.shut_only and parked.vlan != 1
    assert policy.provisioning(conn(provisioning_vlan=10), "p1") == PortConfig("p1", "access", 10)
    with pytest.raises(SwitchError, match="provisioning_vlan"):
        policy.provisioning(conn(), "p1")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"provisioning_vlan": 0}, "provisioning_vlan"),
        ({"quarantine_vlan": "10"}, "quarantine_vlan"),
        ({"allowed_vlans": "x"}, "'x'"),
        ({"allowed_ports": [1]}, "allowed_ports"),
        ({"protected_ports": {}}, "protected_ports"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_validate_settings(settings: dict, named: str) -> None:
    with pytest.raises(SwitchError, match=named) as err:
        policy.validate_settings(conn(**settings))
    assert err.value.kind == ErrorKind.INVALID
