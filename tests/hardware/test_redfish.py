"""The ``redfish`` driver (sushy) against sushy-tools' ``sushy-emulator``: HTTPS with a
self-signed certificate given as the node's CA bundle, Basic auth on. The emulator applies
power changes 1-11 s late (random): the driver polls until the change has landed."""

from __future__ import annotations

import threading
import time

import pytest

from tests.hardware.helpers import PASSWORD, LogCapture, act, enroll, get, power, worker_ctx
from tests.helpers import seed_world
from workers import power_sync
from workers.drivers.base import NodeTask
from workers.drivers.registry import get_driver

pytestmark = pytest.mark.bmc


@pytest.fixture
def admin(ctx) -> dict[str, str]:
    return seed_world(ctx).admin


@pytest.fixture
def bmc(redfish_bmc_factory):
    # 1 s power delay keeps the suite quick; test_power_lands_late uses the real random one.
    return redfish_bmc_factory(password=PASSWORD, power_delay=1)


def info(bmc, **over) -> dict:
    return {
        "redfish_address": bmc.url,
        "redfish_system_id": bmc.system_id,
        "redfish_username": bmc.username,
        "redfish_password": bmc.password,
        "redfish_verify_ca": bmc.ca_path.read_text(),
        **over,
    }


def _sensors(client, admin, jobs, node_id: str):
    box: dict = {}
    t = threading.Thread(
        target=lambda: box.update(r=client.get(f"/v1/nodes/{node_id}/sensors", headers=admin)),
        daemon=True,
    )
    t.start()
    deadline = time.monotonic() + 60
    while t.is_alive() and time.monotonic() < deadline:
        jobs()
        time.sleep(0.05)
    return box["r"]


def test_manage_power_inspect_and_sensors(client, admin, jobs, bmc) -> None:
    node = enroll(client, admin, "rf-1", "redfish", info(bmc), macs=(bmc.macs[0],))
    act(client, admin, node["uuid"], "manage")
    jobs()
    n = get(client, admin, node["uuid"])
    assert n["provision_state"] == "manageable", n["last_error"]
    assert n["power_state"] == "power off"

    power(client, admin, node["uuid"], "power on")
    jobs()
    assert bmc.power_state() == "On"
    assert get(client, admin, node["uuid"])["power_state"] == "power on"
    power(client, admin, node["uuid"], "rebooting")
    jobs()
    assert bmc.power_state() == "On"
    power(client, admin, node["uuid"], "power off")
    jobs()
    assert bmc.power_state() == "Off"

    task = NodeTask(node_id=node["uuid"], driver="redfish", driver_info=info(bmc))
    get_driver("redfish").management.set_boot_device(task, "pxe")
    boot = bmc.get_system()["Boot"]
    assert boot["BootSourceOverrideTarget"] == "Pxe"
    get_driver("redfish").management.set_boot_device(task, "disk", persistent=True)
    assert bmc.get_system()["Boot"]["BootSourceOverrideTarget"] == "Hdd"

    act(client, admin, node["uuid"], "inspect")
    jobs()
    n = get(client, admin, node["uuid"])
    assert n["provision_state"] == "manageable", n["last_error"]
    inv = get(client, admin, node["uuid"], "/inventory")
    assert inv["source"] == "redfish"
    assert n["capabilities"]["boot_mode"] == "uefi"
    ports = {p["address"]: p["source"] for p in n["ports"]}
    # the admin entered one NIC; inspection found the other and kept the admin's
    assert ports == {bmc.macs[0]: "admin", **{m: "inspection" for m in bmc.macs[1:]}}
    assert inv["applied"]["ports_created"] == list(bmc.macs[1:])
    found = inv["inventory"]
    if found["disks_bytes"]:
        assert n["properties"]["local_gb"] == found["disks_bytes"][0] // 2**30 - 1

    r = _sensors(client, admin, jobs, node["uuid"])
    assert r.status_code == 200, r.json
    assert {"temperature", "fan"} <= {s["type"] for s in r.json["sensors"]}


@pytest.mark.parametrize(
    ("over", "words", "kind_hint"),
    [
        ({"redfish_password": "wrong-one"}, "access denied (check the credentials)", "auth"),
        ({"redfish_verify_ca": True}, "TLS certificate is not trusted", "tls"),
        ({"redfish_address": "https://127.0.0.1:1"}, "cannot connect", "unreachable"),
        ({"redfish_system_id": "no-such-system"}, "not found", "system"),
    ],
)
def test_manage_failures_end_in_enroll_with_a_clear_error(
    client, admin, jobs, bmc, over, words, kind_hint
) -> None:
    node = enroll(client, admin, f"rf-{kind_hint}", "redfish", info(bmc, **over))
    act(client, admin, node["uuid"], "manage")
    jobs()
    n = get(client, admin, node["uuid"])
    assert n["provision_state"] == "enroll" and n["reservation"] is None
    assert words in n["last_error"]
    assert PASSWORD not in n["last_error"]


def test_power_lands_late_and_the_driver_polls_until_it_has(redfish_bmc_factory) -> None:
    bmc = redfish_bmc_factory(password=PASSWORD)  # upstream random 1-11 s delay
    task = NodeTask(node_id="n", driver="redfish", driver_info=info(bmc), power_wait=30)
    started = time.monotonic()
    get_driver("redfish").power.set_power_state(task, "power on")
    assert bmc.power_state() == "On"  # returned only once the change had landed
    assert time.monotonic() - started >= 0.9


def test_power_sync_and_a_dying_redfish_bmc(client, admin, jobs, ctx, bmc) -> None:
    node = enroll(client, admin, "rf-sync", "redfish", info(bmc))
    act(client, admin, node["uuid"], "manage")
    jobs()
    wctx = worker_ctx(ctx, power_sync_max_failures=2, power_sync_timeout=8.0)
    with LogCapture() as logs:
        bmc.set_power_out_of_band(True, wait=True)
        assert power_sync.sync_pass(wctx).mismatches == 1
        assert get(client, admin, node["uuid"])["power_state"] == "power on"
        bmc.stop()
        power_sync.sync_pass(wctx)
        assert power_sync.sync_pass(wctx).faults_set == 1
        n = get(client, admin, node["uuid"])
        assert n["maintenance"] and n["fault"] == "power failure"
        assert "power sync failed: Redfish: cannot connect" in n["maintenance_reason"]
        bmc.start()
        assert power_sync.sync_pass(wctx).faults_cleared == 1
        assert not get(client, admin, node["uuid"])["maintenance"]
    assert PASSWORD not in logs.text
