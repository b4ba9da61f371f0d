"""The ``ipmi`` driver against OpenIPMI's ``ipmi_sim``: through the API, real RQ jobs, and
pyghmi in per-call child processes. Power and boot device are checked in what the
emulator's chassis_control recorded (its boot-device read-back is unreliable)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.core.models import Event, Node
from tests.hardware.helpers import PASSWORD, LogCapture, act, enroll, get, power, worker_ctx
from tests.helpers import seed_world
from workers import power_sync

pytestmark = pytest.mark.bmc


@pytest.fixture
def admin(ctx) -> dict[str, str]:
    return seed_world(ctx).admin


@pytest.fixture
def bmc(ipmi_bmc_factory):
    return ipmi_bmc_factory(password=PASSWORD)


def info(bmc, **over) -> dict:
    return {
        "ipmi_address": "127.0.0.1",
        "ipmi_port": bmc.port,
        "ipmi_username": bmc.username,
        "ipmi_password": bmc.password,
        **over,
    }


def test_manage_power_boot_device_sensors_and_inspection(client, admin, jobs, bmc) -> None:
    node = enroll(client, admin, "ipmi-1", "ipmi", info(bmc))
    v = client.get(f"/v1/nodes/{node['uuid']}/validate", headers=admin).json
    assert v["power"] == {"result": True, "reason": None}
    assert v["management"] == {"result": True, "reason": None}
    act(client, admin, node["uuid"], "manage")
    jobs()
    n = get(client, admin, node["uuid"])
    assert n["provision_state"] == "manageable", n["last_error"]
    assert n["power_state"] == "power off" and bmc.power == "off"

    power(client, admin, node["uuid"], "power on")
    jobs()
    assert bmc.power == "on" and get(client, admin, node["uuid"])["power_state"] == "power on"
    resets = bmc.resets
    power(client, admin, node["uuid"], "rebooting")
    jobs()
    assert bmc.resets == resets + 1 and bmc.power == "on"
    power(client, admin, node["uuid"], "power off")
    jobs()
    assert bmc.power == "off" and get(client, admin, node["uuid"])["power_state"] == "power off"

    # boot device, through the driver as a deploy step would set it
    from portal.services import nodes as svc  # noqa: F401  (the API has no boot-device call)
    from workers.drivers.base import NodeTask
    from workers.drivers.registry import get_driver

    task = NodeTask(node_id=node["uuid"], driver="ipmi", driver_info=info(bmc))
    get_driver("ipmi").management.set_boot_device(task, "pxe")
    assert bmc.boot_device == "pxe"
    get_driver("ipmi").management.set_boot_device(task, "disk", persistent=True)
    assert bmc.boot_device == "default"  # ipmi_sim names "boot from disk" default

    import threading
    import time

    box: dict = {}
    t = threading.Thread(
        target=lambda: box.update(r=client.get(f"/v1/nodes/{node['uuid']}/sensors", headers=admin)),
        daemon=True,
    )
    t.start()
    deadline = time.monotonic() + 30
    while t.is_alive() and time.monotonic() < deadline:
        jobs()
        time.sleep(0.05)
    r = box["r"]
    assert r.status_code == 200, r.json
    by_type = {s["type"] for s in r.json["sensors"]}
    assert {"temperature", "fan"} <= by_type
    assert all(s["health"] == "ok" for s in r.json["sensors"])

    act(client, admin, node["uuid"], "inspect")
    jobs()
    n = get(client, admin, node["uuid"])
    assert n["provision_state"] == "manageable", n["last_error"]
    inv = get(client, admin, node["uuid"], "/inventory")
    assert inv["source"] == "ipmi"
    assert inv["inventory"]["fru"], "the FRU records the BMC serves"
    assert {s["type"] for s in inv["inventory"]["sensors"]} >= {"temperature", "fan"}
    # generic IPMI has no CPU/RAM/disk inventory: the admin's properties stay
    assert n["properties"]["cpus"] == 2 and inv["applied"]["properties"] == {}


def test_the_bmc_password_is_encrypted_and_redacted_everywhere(
    client, admin, jobs, bmc, ctx
) -> None:
    with LogCapture() as logs:
        node = enroll(client, admin, "ipmi-secret", "ipmi", info(bmc))
        act(client, admin, node["uuid"], "manage")
        jobs()
        act(client, admin, node["uuid"], "inspect")
        jobs()
        shown = get(client, admin, node["uuid"])
        listed = client.get("/v1/nodes", headers=admin).get_data(as_text=True)
        events = client.get(f"/v1/events?resource_id={node['uuid']}", headers=admin)
        inventory = client.get(f"/v1/nodes/{node['uuid']}/inventory", headers=admin)
    assert shown["provision_state"] == "manageable", shown["last_error"]
    assert shown["driver_info"]["ipmi_password"] == "******"
    for text in (listed, events.get_data(as_text=True), inventory.get_data(as_text=True)):
        assert PASSWORD not in text
    with ctx.session() as s:
        stored = s.get_one(Node, node["uuid"]).driver_info["ipmi_password"]
        assert PASSWORD not in stored and stored != PASSWORD  # a Fernet token at rest
    assert logs.lines and PASSWORD not in logs.text


def test_wrong_password_ends_in_enroll_with_a_clear_error(client, admin, jobs, bmc) -> None:
    node = enroll(client, admin, "ipmi-bad", "ipmi", info(bmc, ipmi_password="not-the-one"))
    act(client, admin, node["uuid"], "manage")
    jobs()
    n = get(client, admin, node["uuid"])
    assert n["provision_state"] == "enroll" and n["reservation"] is None
    assert "verification failed: IPMI: Incorrect password provided" in n["last_error"]


def test_unreachable_bmc_ends_in_enroll_with_a_clear_error(client, admin, jobs, bmc, ctx):
    bmc.stop()
    node = enroll(client, admin, "ipmi-dead", "ipmi", info(bmc))
    act(client, admin, node["uuid"], "manage")
    jobs()
    n = get(client, admin, node["uuid"])
    assert n["provision_state"] == "enroll" and n["reservation"] is None
    assert "no answer from the BMC at 127.0.0.1" in n["last_error"]


def test_power_sync_sees_ipmitool_changes_and_survives_a_dying_bmc(
    client, admin, jobs, ctx, ipmi_bmc_factory
) -> None:
    with LogCapture() as logs:
        _sync_story(client, admin, jobs, ctx, ipmi_bmc_factory)
    assert logs.lines, "the story logs (e.g. the fault-maintenance)"
    assert PASSWORD not in logs.text  # the BMC password never reached a log line


def _sync_story(client, admin, jobs, ctx, ipmi_bmc_factory) -> None:
    bmcs = [ipmi_bmc_factory(password=PASSWORD) for _ in range(2)]
    ids = []
    for i, b in enumerate(bmcs):
        node = enroll(client, admin, f"sync-{i}", "ipmi", info(b))
        act(client, admin, node["uuid"], "manage")
        ids.append(node["uuid"])
    jobs()
    wctx = worker_ctx(ctx, power_sync_max_failures=2, power_sync_timeout=8.0)
    assert power_sync.sync_pass(wctx).read_ok == 2

    # an operator powers node 0 on with ipmitool, behind the portal's back
    bmcs[0].set_power_out_of_band(True)
    report = power_sync.sync_pass(wctx)
    assert report.mismatches == 1
    assert get(client, admin, ids[0])["power_state"] == "power on"

    # node 1's BMC dies: 2 failed passes → fault-maintenance; node 0 is unaffected
    bmcs[1].stop()
    first = power_sync.sync_pass(wctx)
    assert (first.read_ok, first.read_failed) == (1, 1) and first.errors == {"unreachable": 1}
    assert not get(client, admin, ids[1])["maintenance"]
    second = power_sync.sync_pass(wctx)
    assert second.faults_set == 1
    n = get(client, admin, ids[1])
    assert n["maintenance"] and n["fault"] == "power failure"
    assert n["maintenance_reason"].startswith("power sync failed: IPMI: no answer")
    assert second.seconds < 8 + 5  # one timeout, not one per pass step

    # it comes back: the maintenance the loop set is lifted by the loop
    bmcs[1].start()
    third = power_sync.sync_pass(wctx)
    assert third.faults_cleared == 1
    n = get(client, admin, ids[1])
    assert not n["maintenance"] and n["fault"] is None
    with ctx.session() as s:
        kinds = [
            e.payload.get("maintenance")
            for e in s.scalars(
                select(Event).where(Event.resource_id == ids[1], Event.type == "node.maintenance")
            )
        ]
        assert kinds == [True, False]
        assert s.get_one(Node, ids[1]).power_sync_failures == 0
