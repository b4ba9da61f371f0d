"""The exact command text each vendor set sends for one batch, and its read parser."""

from __future__ import annotations

from workers.switches.base import PortConfig
from workers.switches.vendors import COMMAND_SETS, parse_vlan_list, vlan_list

BATCH = [
    PortConfig("P1", "access", 100),
    PortConfig("P2", "trunk", 100, (100, 200, 201, 202)),
    PortConfig("P3", "trunk", None, (300,)),
    PortConfig("P4", "access", None, enabled=False),
]


def render(name: str) -> list[str]:
    return COMMAND_SETS[name].render(
        BATCH, {"bridge": "br0", "ovsdb": "/run/ovs/db.sock", "timeout": 10}
    )


IOS = [
    "vlan 100", "exit", "vlan 200", "exit", "vlan 201", "exit", "vlan 202", "exit", "vlan 300", "exit",
    "interface P1", "switchport mode access", "switchport access vlan 100", "no shutdown", "exit",
    "interface P2", "switchport mode trunk", "switchport trunk native vlan 100",
    "switchport trunk allowed vlan 100,200-202", "no shutdown", "exit",
    "interface P3", "switchport mode trunk", "no switchport trunk native vlan",
    "switchport trunk allowed vlan 300", "no shutdown", "exit",
    "interface P4", "shutdown", "exit",
]  # fmt: skip


def test_ios_like_sets() -> None:
    for name in ("cisco_ios", "cisco_nxos", "arista_eos"):
        assert render(name) == IOS, name
    assert COMMAND_SETS["cisco_ios"].save and COMMAND_SETS["cisco_ios"].enable


def test_dell_os10_native_vlan_is_the_access_vlan() -> None:
    cmds = render("dell_os10")
    p2 = cmds[cmds.index("interface P2") : cmds.index("interface P3")]
    assert p2 == [
        "interface P2",
        "switchport mode trunk",
        "switchport access vlan 100",
        "switchport trunk allowed vlan 100,200-202",
        "no shutdown",
        "exit",
    ]
    assert "no switchport access vlan" in cmds


def test_junos_set_commands_then_commit() -> None:
    assert render("juniper_junos") == [
        "delete interfaces P1 unit 0 family ethernet-switching vlan",
        "delete interfaces P1 native-vlan-id",
        "set interfaces P1 unit 0 family ethernet-switching interface-mode access",
        "set interfaces P1 unit 0 family ethernet-switching vlan members 100",
        "delete interfaces P1 disable",
        "delete interfaces P2 unit 0 family ethernet-switching vlan",
        "delete interfaces P2 native-vlan-id",
        "set interfaces P2 unit 0 family ethernet-switching interface-mode trunk",
        "set interfaces P2 unit 0 family ethernet-switching vlan members 100",
        "set interfaces P2 unit 0 family ethernet-switching vlan members 200",
        "set interfaces P2 unit 0 family ethernet-switching vlan members 201",
        "set interfaces P2 unit 0 family ethernet-switching vlan members 202",
        "set interfaces P2 native-vlan-id 100",
        "delete interfaces P2 disable",
        "delete interfaces P3 unit 0 family ethernet-switching vlan",
        "delete interfaces P3 native-vlan-id",
        "set interfaces P3 unit 0 family ethernet-switching interface-mode trunk",
        "set interfaces P3 unit 0 family ethernet-switching vlan members 300",
        "delete interfaces P3 disable",
        "set interfaces P4 disable",
    ]
    junos = COMMAND_SETS["juniper_junos"]
    assert junos.commit and not junos.save
    shown = "\n".join([
        "set interfaces P2 unit 0 family ethernet-switching interface-mode trunk",
        "set interfaces P2 unit 0 family ethernet-switching vlan members 100",
        "set interfaces P2 unit 0 family ethernet-switching vlan members 200-202",
        "set interfaces P2 native-vlan-id 100",
        "set interfaces P20 disable",
    ])  # fmt: skip
    assert junos.parse_port("P2", shown) == BATCH[1]
    assert junos.parse_port("P4", "set interfaces P4 disable\n") == PortConfig(
        "P4", "access", None, enabled=False
    )


def test_cumulus_nclu() -> None:
    cmds = render("cumulus")
    assert cmds[:5] == [
        "net del interface P1 bridge access",
        "net del interface P1 bridge vids",
        "net del interface P1 bridge pvid",
        "net add interface P1 bridge access 100",
        "net del interface P1 link down",
    ]
    assert "net add interface P2 bridge vids 100,200-202" in cmds
    assert "net add interface P2 bridge pvid 100" in cmds
    assert cmds[-1] == "net add interface P4 link down"
    listing = "net add interface P1 bridge access 100\nnet add interface P2 bridge vids 100,200-202\nnet add interface P2 bridge pvid 100\nnet add interface P4 link down\n"
    parsed = COMMAND_SETS["cumulus"].parse(["P1", "P2"], [listing])
    assert parsed == {"P1": BATCH[0], "P2": BATCH[1]}


def test_ovs_linux_is_one_transaction_line() -> None:
    (line,) = render("ovs_linux")
    # Admin states first; the one transaction waits until OVSDB shows each of them.
    assert line == (
        "ovs-ofctl --timeout=10 mod-port unix:/run/ovs/br0.mgmt P1 up"
        " && ovs-ofctl --timeout=10 mod-port unix:/run/ovs/br0.mgmt P2 up"
        " && ovs-ofctl --timeout=10 mod-port unix:/run/ovs/br0.mgmt P3 up"
        " && ovs-ofctl --timeout=10 mod-port unix:/run/ovs/br0.mgmt P4 down"
        " && ovs-vsctl --timeout=10 --db=unix:/run/ovs/db.sock"
        " set port P1 tag=100 vlan_mode=access 'trunks=[]'"
        " -- set port P2 vlan_mode=native-untagged tag=100 'trunks=[100,200,201,202]'"
        " -- set port P3 vlan_mode=trunk 'tag=[]' 'trunks=[300]'"
        " -- wait-until interface P1 admin_state=up"
        " -- wait-until interface P2 admin_state=up"
        " -- wait-until interface P3 admin_state=up"
        " -- wait-until interface P4 admin_state=down"
        "; echo bms-rc=$?"
    )


def test_ios_parser() -> None:
    ios = COMMAND_SETS["cisco_ios"]
    text = "interface P2\n switchport trunk native vlan 100\n switchport trunk allowed vlan 100,200\n switchport trunk allowed vlan add 201-202\n switchport mode trunk\n!\n"
    assert ios.parse_port("P2", text) == BATCH[1]
    assert ios.parse_port(
        "P1", "interface P1\n switchport access vlan 100\n switchport mode access\n shutdown\n"
    ) == PortConfig("P1", "access", 100, enabled=False)
    assert ios.parse_port("P9", "interface P9\n") == PortConfig("P9", "access", 1)  # default VLAN
    dell = COMMAND_SETS["dell_os10"]
    assert (
        dell.parse_port(
            "P2",
            "switchport mode trunk\nswitchport access vlan 100\nswitchport trunk allowed vlan 100,200-202\n",
        )
        == BATCH[1]
    )


def test_vlan_lists() -> None:
    assert vlan_list((5, 1, 2, 3, 9, 10)) == "1-3,5,9-10"
    assert parse_vlan_list("1-3,5, 9-10") == (1, 2, 3, 5, 9, 10)
    assert parse_vlan_list("none") == ()
