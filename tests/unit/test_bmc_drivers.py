"""The ipmi and redfish drivers' cheap parts: driver_info checks, error classes, inventory."""

from __future__ import annotations

import pytest
import sushy.exceptions as sx

from workers.drivers import ipmi, redfish
from workers.drivers.base import DriverError, ErrorKind, NodeTask
from workers.drivers.registry import get_driver


def task(driver: str, **info: object) -> NodeTask:
    return NodeTask(node_id="n1", driver=driver, driver_info=dict(info))


# -- ipmi driver_info ----------------------------------------------------------------------


def test_ipmi_parses_a_complete_driver_info_into_bytes_credentials() -> None:
    info = ipmi.IpmiInfo.parse(
        {
            "ipmi_address": "10.0.0.5",
            "ipmi_port": "6230",
            "ipmi_username": "admin",
            "ipmi_password": "pw",
            "ipmi_cipher_suite": 3,
        }
    )
    assert (info.address, info.port, info.username, info.password) == (
        "10.0.0.5",
        6230,
        b"admin",
        b"pw",
    )
    assert info.priv_level == 4


@pytest.mark.parametrize(
    ("info", "kind", "words"),
    [
        ({}, ErrorKind.INVALID, "ipmi_address is required"),
        ({"ipmi_address": "  "}, ErrorKind.INVALID, "ipmi_address is required"),
        ({"ipmi_address": "bmc..example"}, ErrorKind.INVALID, "IP address or a host name"),
        ({"ipmi_address": "10.0.0.1", "ipmi_port": "70000"}, ErrorKind.INVALID, "1-65535"),
        ({"ipmi_address": "10.0.0.1", "ipmi_port": "abc"}, ErrorKind.INVALID, "port number"),
        ({"ipmi_address": "10.0.0.1", "ipmi_port": True}, ErrorKind.INVALID, "port number"),
        ({"ipmi_address": "10.0.0.1", "ipmi_adress": "x"}, ErrorKind.INVALID, "ipmi_adress"),
        ({"ipmi_address": "10.0.0.1", "ipmi_cipher_suite": 0}, ErrorKind.UNSUPPORTED, "17"),
        ({"ipmi_address": "10.0.0.1", "ipmi_bridging": "dual"}, ErrorKind.UNSUPPORTED, "dual"),
        ({"ipmi_address": "10.0.0.1", "ipmi_priv_level": "root"}, ErrorKind.INVALID, "OPERATOR"),
        ({"ipmi_address": "10.0.0.1", "ipmi_username": "u" * 17}, ErrorKind.INVALID, "16"),
        ({"ipmi_address": "10.0.0.1", "ipmi_password": 1234}, ErrorKind.INVALID, "string"),
    ],
)
def test_ipmi_validate_names_the_bad_field(info: dict, kind: str, words: str) -> None:
    with pytest.raises(DriverError) as err:
        get_driver("ipmi").power.validate(task("ipmi", **info))
    assert err.value.kind == kind
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Incorrect password provided", ErrorKind.AUTH),
        ("Unauthorized name", ErrorKind.AUTH),
        ("Insufficient privilege level or other restriction", ErrorKind.AUTH),
        ("timeout", ErrorKind.UNREACHABLE),
        ("Unable to establish IPMI session", ErrorKind.UNREACHABLE),
        ("Node busy", ErrorKind.TRANSIENT),
        ("Session has been broken", ErrorKind.TRANSIENT),
        ("Invalid data field in request", ErrorKind.UNSUPPORTED),
        ("something odd", ErrorKind.ERROR),
    ],
)
def test_ipmi_errors_are_classified_from_pyghmi_messages(message: str, kind: str) -> None:
    from pyghmi.exceptions import IpmiException

    err = ipmi.classify(IpmiException(message))
    assert err.kind == kind and message in str(err)


def test_ipmi_finds_macs_in_fru_records() -> None:
    fru = {
        "System": {"MAC Address 1": "52-54-00-AA-BB-01", "Serial": "X1"},
        "NIC": [{"mac": "52:54:00:aa:bb:02"}, {"mac": "00:00:00:00:00:00"}],
    }
    assert ipmi._macs_in(fru) == {"52:54:00:aa:bb:01", "52:54:00:aa:bb:02"}


@pytest.mark.parametrize(
    ("capabilities", "uefi"),
    [({"boot_mode": "uefi"}, True), ({"boot_mode": "bios"}, False), ({}, None)],
)
def test_ipmi_boot_device_carries_the_nodes_boot_mode(
    monkeypatch: pytest.MonkeyPatch, capabilities: dict[str, str], uefi: bool | None
) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(ipmi.bmc, "call", lambda _task, fn, *args, **_kw: calls.append((fn, *args)))
    t = task("ipmi", ipmi_address="127.0.0.1")
    t.capabilities = capabilities
    ipmi.IpmiManagement().set_boot_device(t, "pxe")
    assert calls == [(ipmi.set_bootdev, ipmi.IpmiInfo.parse(t.driver_info), "pxe", False, uefi)]


# -- redfish driver_info -------------------------------------------------------------------


def test_redfish_parses_address_system_and_verify() -> None:
    info = redfish.RedfishInfo.parse(
        {
            "redfish_address": "https://10.0.0.9:8443",
            "redfish_system_id": "abc",
            "redfish_username": "u",
            "redfish_password": "p",
            "redfish_verify_ca": "false",
        }
    )
    assert info.address == "https://10.0.0.9:8443"
    assert info.system_path == "/redfish/v1/Systems/abc"
    assert info.verify is False
    bare = redfish.RedfishInfo.parse({"redfish_address": "bmc-7.example.com"})
    assert bare.address == "https://bmc-7.example.com" and bare.verify is True
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert (
        redfish.RedfishInfo.parse({"redfish_address": "h", "redfish_verify_ca": pem}).verify
        == pem.strip()
    )


@pytest.mark.parametrize(
    ("info", "words"),
    [
        ({}, "redfish_address is required"),
        ({"redfish_address": "ftp://bmc"}, "https://host"),
        ({"redfish_address": "https://bmc:99999"}, "bad port"),
        ({"redfish_address": "https://bmc", "redfish_verify_ca": "maybe"}, "redfish_verify_ca"),
        ({"redfish_address": "https://bmc", "redfish_verify_ca": "rel/ca.pem"}, "absolute path"),
        ({"redfish_address": "https://bmc", "redfish_sytem_id": "1"}, "redfish_sytem_id"),
    ],
)
def test_redfish_validate_names_the_bad_field(info: dict, words: str) -> None:
    with pytest.raises(DriverError) as err:
        get_driver("redfish").management.validate(task("redfish", **info))
    assert err.value.kind == ErrorKind.INVALID
    assert words in str(err.value)


class _Resp:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.json = lambda: {}
        self.text = ""

    def __getattr__(self, name: str) -> object:
        return None


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (sx.AccessError("GET", "/redfish/v1", _Resp(401)), ErrorKind.AUTH),
        (sx.ConnectionError(url="https://x", error="Connection refused"), ErrorKind.UNREACHABLE),
        (
            sx.ConnectionError(url="https://x", error="[SSL: CERTIFICATE_VERIFY_FAILED]"),
            ErrorKind.AUTH,
        ),
        (sx.ServerSideError("GET", "/x", _Resp(503)), ErrorKind.TRANSIENT),
        (sx.ResourceNotFoundError("GET", "/x", _Resp(404)), ErrorKind.ERROR),
        (
            sx.MissingActionError(action="#ComputerSystem.Reset", resource="/x"),
            ErrorKind.UNSUPPORTED,
        ),
    ],
)
def test_redfish_errors_are_classified_from_sushy_exceptions(exc: Exception, kind: str) -> None:
    assert redfish.classify(exc).kind == kind


def test_redfish_inventory_maps_to_properties_capabilities_and_macs() -> None:
    raw = {
        "processors": {"count": 32, "architecture": "x86"},
        "memory": {"total_gib": 96},
        "disks_bytes": [480 * 2**30, 120 * 2**30],
        "nics": {"52:54:00:aa:bb:01": "Enabled", "00:00:00:00:00:00": "Disabled"},
        "boot_mode": "UEFI",
    }
    inv = redfish.inventory_from(raw)
    assert inv.properties == {
        "cpus": 32,
        "cpu_arch": "x86_64",
        "memory_mb": 96 * 1024,
        "local_gb": 479,
    }
    assert inv.capabilities == {"boot_mode": "uefi"}
    assert inv.macs == ["52:54:00:aa:bb:01"]
    empty = redfish.inventory_from(
        {
            "processors": {"count": 0, "architecture": None},
            "memory": {"total_gib": None},
            "disks_bytes": [],
            "nics": {},
            "boot_mode": None,
        }
    )
    assert empty.properties == {} and empty.capabilities == {}  # nothing guessed
