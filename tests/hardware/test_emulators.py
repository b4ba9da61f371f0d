"""Smoke tests: the BMC emulator fixtures work with the real clients (pyghmi, sushy).

pyghmi runs in a child interpreter (``PyghmiChild``), never in the pytest process: the
drivers fork per BMC call, and a fork of a process that has used pyghmi's IPMI client
inherits a dead I/O thread and hangs (see tests/emulators/pyghmi_child.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import sushy
from pyghmi.exceptions import IpmiException

from tests.emulators.ipmi_sim import FAN, TEMPERATURE, IpmiSim
from tests.emulators.pyghmi_child import PyghmiChild
from tests.emulators.sushy import SushyEmulator

pytestmark = pytest.mark.bmc


def ipmi_client(sim: IpmiSim, **overrides: Any) -> PyghmiChild:
    return PyghmiChild(**{**sim.pyghmi_kwargs(), **overrides})


@pytest.fixture
def ipmi(ipmi_bmc: IpmiSim) -> Iterator[PyghmiChild]:
    with ipmi_client(ipmi_bmc) as client:
        yield client


def redfish_client(emu: SushyEmulator, **overrides: Any) -> sushy.Sushy:
    return sushy.Sushy(**{**emu.sushy_kwargs(), **overrides})


# ------------------------------------------------------------------------- IPMI


def test_ipmi_power_on_off_recorded_by_chassis_control(
    ipmi_bmc: IpmiSim, ipmi: PyghmiChild
) -> None:
    assert ipmi.call("get_power") == {"powerstate": "off"}
    assert ipmi_bmc.power == "off"

    assert ipmi.call("set_power", "on", wait=True) == {"powerstate": "on"}
    assert ipmi_bmc.power == "on"
    assert ipmi.call("get_power") == {"powerstate": "on"}

    assert ipmi.call("set_power", "off", wait=True) == {"powerstate": "off"}
    assert ipmi_bmc.power == "off"
    assert "set power 1" in ipmi_bmc.chassis_calls
    assert "set power 0" in ipmi_bmc.chassis_calls


def test_ipmi_soft_off_and_reset(ipmi_bmc: IpmiSim, ipmi: PyghmiChild) -> None:
    ipmi.call("set_power", "on", wait=True)
    assert ipmi.call("set_power", "reset") == {"pendingpowerstate": "reset"}
    assert ipmi_bmc.resets == 1
    assert ipmi_bmc.power == "on"

    assert ipmi.call("set_power", "shutdown", wait=5) == {"powerstate": "off"}
    assert "set shutdown 1" in ipmi_bmc.chassis_calls

    ipmi.call("set_power", "on", wait=True)
    ipmi_bmc.ignore_soft_off()
    with pytest.raises(IpmiException, match="did not accomplish"):
        ipmi.call("set_power", "shutdown", wait=2)
    assert ipmi_bmc.power == "on"


def test_ipmi_set_bootdev_network_records_pxe(ipmi_bmc: IpmiSim, ipmi: PyghmiChild) -> None:
    assert ipmi_bmc.boot_device is None
    assert ipmi.call("set_bootdev", "network") == {"bootdev": "network"}
    assert ipmi_bmc.boot_device == "pxe"
    # ipmi_sim answers Get System Boot Options with the "valid" bit clear: reads as default.
    assert ipmi.call("get_bootdev")["bootdev"] == "default"
    ipmi.call("set_bootdev", "hd")
    assert ipmi_bmc.boot_device == "default"


def test_ipmi_out_of_band_change_seen_by_pyghmi(ipmi_bmc: IpmiSim, ipmi: PyghmiChild) -> None:
    assert ipmi.call("get_power") == {"powerstate": "off"}
    ipmi_bmc.set_power_out_of_band(True)
    assert ipmi_bmc.power == "on"
    assert ipmi.call("get_power") == {"powerstate": "on"}
    ipmi_bmc.set_power_out_of_band(False)
    assert ipmi.call("get_power") == {"powerstate": "off"}


def test_ipmi_inventory_and_sensors(ipmi_bmc: IpmiSim, ipmi: PyghmiChild) -> None:
    inventory = dict(ipmi.call("get_inventory"))
    assert ipmi_bmc.fru is not None
    system = inventory["System"]
    assert system["Serial Number"] == ipmi_bmc.fru.serial
    assert system["Manufacturer"] == ipmi_bmc.fru.manufacturer
    assert system["Product name"] == ipmi_bmc.fru.product

    readings = {r["name"]: r for r in ipmi.call("get_sensor_data")}
    assert readings[TEMPERATURE.name]["value"] == TEMPERATURE.value == 24.0
    assert readings[TEMPERATURE.name]["units"] == "°C"
    assert readings[FAN.name]["value"] == FAN.value == 4800.0
    assert readings[FAN.name]["units"] == "RPM"
    assert all(r["health"] == 0 and not r["unavailable"] for r in readings.values())


def test_ipmi_wrong_credentials_rejected(ipmi_bmc: IpmiSim) -> None:
    with pytest.raises(IpmiException, match="Incorrect password provided"):
        ipmi_client(ipmi_bmc, password=b"not-the-password")
    with pytest.raises(IpmiException, match="Unauthorized name in RAKP2"):
        ipmi_client(ipmi_bmc, userid=b"nobody")


def test_ipmi_stop_and_start_keeps_port_and_power(ipmi_bmc: IpmiSim) -> None:
    port = ipmi_bmc.port
    ipmi_bmc.set_power_out_of_band(True)
    ipmi_bmc.stop()
    assert not ipmi_bmc.running
    assert not ipmi_bmc.answers_ping()

    ipmi_bmc.start()
    assert ipmi_bmc.port == port
    with ipmi_client(ipmi_bmc) as ipmi:  # a fresh process: no stale cached session
        assert ipmi.call("get_power") == {"powerstate": "on"}


def test_ipmi_factory_gives_independent_bmcs(ipmi_bmc_factory: Callable[..., IpmiSim]) -> None:
    a = ipmi_bmc_factory()
    b = ipmi_bmc_factory(username="operator", password="secret", power_on=True)
    assert a.port != b.port
    with (
        ipmi_client(a) as client_a,
        ipmi_client(b, userid=b"operator", password=b"secret") as client_b,
    ):
        client_a.call("set_power", "on")
        assert client_b.call("get_power") == {"powerstate": "on"}
    assert a.power == "on"


# ---------------------------------------------------------------------- Redfish


def test_redfish_system_inventory_and_power_on(redfish_bmc: SushyEmulator) -> None:
    conn = redfish_client(redfish_bmc)
    system = conn.get_system(redfish_bmc.system_path)
    assert system.identity == redfish_bmc.system_id
    assert system.uuid == redfish_bmc.system.uuid
    assert system.name == redfish_bmc.system.name
    assert set(system.ethernet_interfaces.summary) == set(redfish_bmc.macs)
    assert system.boot.mode == sushy.BootSourceOverrideMode.UEFI
    assert system.power_state == sushy.PowerState.OFF

    system.reset_system(sushy.ResetType.ON)
    deadline = time.monotonic() + 20  # the fake driver applies it 1-11 s later
    while True:
        system.refresh()
        if system.power_state == sushy.PowerState.ON:
            break
        assert time.monotonic() < deadline, "power-on not applied within 20 s"
        time.sleep(0.25)
    assert redfish_bmc.power == "on"


def test_redfish_wrong_password_rejected(redfish_bmc_shared: SushyEmulator) -> None:
    # The service root is served without auth, so the constructor succeeds; the first
    # authenticated GET is refused (Basic auth: sushy does not retry).
    conn = redfish_client(redfish_bmc_shared, password="not-the-password")
    with pytest.raises(sushy.exceptions.AccessError) as info:
        conn.get_system(redfish_bmc_shared.system_path)
    assert info.value.status_code == 401


def test_redfish_unknown_ca_is_a_tls_error(redfish_bmc_shared: SushyEmulator) -> None:
    with pytest.raises(sushy.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redfish_client(redfish_bmc_shared, verify=True)


def test_redfish_unknown_system_is_not_found(redfish_bmc_shared: SushyEmulator) -> None:
    conn = redfish_client(redfish_bmc_shared)
    with pytest.raises(sushy.exceptions.ResourceNotFoundError) as info:
        conn.get_system("/redfish/v1/Systems/00000000-0000-0000-0000-000000000000")
    assert info.value.status_code == 404


def test_redfish_out_of_band_power_survives_restart(
    redfish_bmc_factory: Callable[..., SushyEmulator],
) -> None:
    emu = redfish_bmc_factory(power_delay=1)
    port = emu.port
    emu.set_power_out_of_band(True, wait=True, timeout=10)
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        emu.request("GET", emu.system_path, timeout=2)
    emu.start()
    assert emu.port == port
    assert emu.power == "on"
    assert redfish_client(emu).get_system(emu.system_path).power_state == sushy.PowerState.ON
