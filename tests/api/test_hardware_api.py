"""Inspection, inventory, sensors, fault fields and soft power off through the API (fake
driver, real RQ jobs). The same flows against real BMC emulators are in tests/hardware."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest

from portal.core.models import Node
from tests.helpers import node_body, seed_world


@pytest.fixture
def admin(ctx) -> dict[str, str]:
    return seed_world(ctx).admin


def enroll(client, admin, i: int, **over: Any) -> dict[str, Any]:
    r = client.post("/v1/nodes", json=node_body(i, **over), headers=admin)
    assert r.status_code == 201, r.json
    return r.json


def provision(client, admin, ident: str, target: str) -> Any:
    return client.put(f"/v1/nodes/{ident}/states/provision", json={"target": target}, headers=admin)


def manageable(client, admin, jobs, i: int, **over: Any) -> dict[str, Any]:
    node = enroll(client, admin, i, **over)
    assert provision(client, admin, node["uuid"], "manage").status_code == 202
    jobs()
    return client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json


FOUND = {
    "properties": {"cpus": 64, "memory_mb": 262144, "local_gb": 893, "cpu_arch": "x86_64"},
    "capabilities": {"boot_mode": "uefi"},
    "macs": ["52:54:00:99:00:01", "52:54:00:99:00:02"],
}


def test_inspection_fills_properties_capabilities_and_ports(client, admin, jobs) -> None:
    node = manageable(
        client, admin, jobs, 1, driver_info={"bmc_address": "10.0.0.1", "fake_inventory": FOUND}
    )
    admin_port = node["ports"][0]["address"]
    r = provision(client, admin, node["uuid"], "inspect")
    assert r.status_code == 202 and r.json["provision_state"] == "inspecting"
    assert r.json["target_provision_state"] == "manageable"
    jobs()
    after = client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json
    assert after["provision_state"] == "manageable" and after["last_error"] is None
    assert after["properties"] == FOUND["properties"]
    assert after["capabilities"]["boot_mode"] == "uefi"
    ports = {p["address"]: p["source"] for p in after["ports"]}
    # discovered MACs added; the admin's port (not seen by the BMC) kept
    assert ports == {admin_port: "admin", **dict.fromkeys(FOUND["macs"], "inspection")}

    inv = client.get(f"/v1/nodes/{node['uuid']}/inventory", headers=admin).json
    assert inv["source"] == "fake" and inv["inventory"]["fake"] is True
    assert inv["applied"]["properties"]["cpus"] == {"old": 8, "new": 64}
    assert inv["applied"]["ports_created"] == FOUND["macs"]
    events = client.get(f"/v1/events?resource_id={node['uuid']}", headers=admin).json["events"]
    assert "node.inspected" in [e["type"] for e in events]


def test_a_mac_of_another_node_is_reported_not_stolen(client, admin, jobs) -> None:
    other = enroll(client, admin, 2)
    stolen = other["ports"][0]["address"]
    found = {**FOUND, "macs": [stolen, "52:54:00:99:00:03"]}
    node = manageable(
        client, admin, jobs, 3, driver_info={"bmc_address": "10.0.0.3", "fake_inventory": found}
    )
    provision(client, admin, node["uuid"], "inspect")
    jobs()
    inv = client.get(f"/v1/nodes/{node['uuid']}/inventory", headers=admin).json
    assert inv["applied"]["ports_created"] == ["52:54:00:99:00:03"]
    assert inv["applied"]["ports_skipped"] == [
        {"address": stolen, "reason": f"port of node {other['uuid']}"}
    ]
    assert client.get(f"/v1/nodes/{other['uuid']}", headers=admin).json["ports"] == other["ports"]


def test_failed_inspection_lands_in_inspect_failed_and_can_be_retried(client, admin, jobs, ctx):
    node = manageable(
        client, admin, jobs, 4, driver_info={"bmc_address": "10.0.0.4", "fake_fail": "inspect"}
    )
    provision(client, admin, node["uuid"], "inspect")
    jobs()
    failed = client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json
    assert failed["provision_state"] == "inspect failed"
    assert "inspection failed: fake failure injected in step 'inspect'" in failed["last_error"]
    assert failed["allowed_actions"] == ["inspect", "manage"]
    assert client.get(f"/v1/nodes/{node['uuid']}/inventory", headers=admin).status_code == 404
    # fix the BMC, retry
    r = client.patch(
        f"/v1/nodes/{node['uuid']}",
        json=[{"op": "remove", "path": "/driver_info/fake_fail"}],
        headers={**admin, "Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.json
    provision(client, admin, node["uuid"], "inspect")
    jobs()
    ok = client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json
    assert ok["provision_state"] == "manageable" and ok["last_error"] is None


def test_inspect_is_refused_outside_manageable(client, admin) -> None:
    node = enroll(client, admin, 5)
    r = provision(client, admin, node["uuid"], "inspect")
    assert r.status_code == 409
    assert r.json["allowed"] == ["manage"] and "enroll" in r.json["detail"]


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(r=fn()), daemon=True)
    thread.start()
    return thread, box


def _serve_jobs_until(thread: threading.Thread, jobs: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        jobs()
        time.sleep(0.05)
    thread.join(1)


def test_sensors_are_read_by_a_worker(client, admin, jobs) -> None:
    node = manageable(client, admin, jobs, 6)
    thread, box = _in_thread(lambda: client.get(f"/v1/nodes/{node['uuid']}/sensors", headers=admin))
    _serve_jobs_until(thread, jobs)
    r = box["r"]
    assert r.status_code == 200, r.json
    kinds = {s["type"] for s in r.json["sensors"]}
    assert {"temperature", "fan", "power"} <= kinds
    assert r.json["node_uuid"] == node["uuid"] and r.json["read_at"]


def test_sensors_of_a_failing_bmc_are_a_502_naming_the_error(client, admin, jobs) -> None:
    node = manageable(client, admin, jobs, 7)
    client.patch(
        f"/v1/nodes/{node['uuid']}",
        json=[{"op": "add", "path": "/driver_info/fake_fail", "value": "sensors"}],
        headers={**admin, "Content-Type": "application/json-patch+json"},
    )
    thread, box = _in_thread(lambda: client.get(f"/v1/nodes/{node['uuid']}/sensors", headers=admin))
    _serve_jobs_until(thread, jobs)
    assert box["r"].status_code == 502
    assert "fake failure injected in step 'sensors'" in box["r"].json["detail"]


def test_sensors_without_workers_time_out_with_a_504(client, admin, jobs, ctx) -> None:
    node = manageable(client, admin, jobs, 8)
    # The API waits bmc_timeout + 10 s for a worker; make that 1 s (nobody serves the queue).
    ctx.settings = dataclasses.replace(ctx.settings, bmc_timeout=-9.0)
    r = client.get(f"/v1/nodes/{node['uuid']}/sensors", headers=admin)
    assert r.status_code == 504
    assert "are workers running" in r.json["detail"]


def test_sensors_and_inventory_are_admin_only(ctx, client, jobs) -> None:
    world = seed_world(ctx)
    node = manageable(client, world.admin, jobs, 9)
    for path in ("sensors", "inventory"):
        r = client.get(f"/v1/nodes/{node['uuid']}/{path}", headers=world.alice)
        assert r.status_code in (403, 404)


def test_soft_power_off_and_fault_field(client, admin, jobs, ctx) -> None:
    node = manageable(client, admin, jobs, 10)
    client.put(f"/v1/nodes/{node['uuid']}/states/power", json={"target": "power on"}, headers=admin)
    jobs()
    r = client.put(
        f"/v1/nodes/{node['uuid']}/states/power", json={"target": "soft power off"}, headers=admin
    )
    assert r.status_code == 202
    jobs()
    after = client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json
    assert after["power_state"] == "power off"
    assert after["fault"] is None
    with ctx.session() as s:
        n = s.get_one(Node, node["uuid"])
        n.maintenance, n.fault, n.maintenance_reason = True, "power failure", "power sync failed: x"
    listed = client.get("/v1/nodes?maintenance=true", headers=admin).json["nodes"]
    assert [(n["uuid"], n["fault"]) for n in listed] == [(node["uuid"], "power failure")]
    # an admin taking over the maintenance owns it: the fault is gone
    r = client.put(f"/v1/nodes/{node['uuid']}/maintenance", json={"reason": "RMA"}, headers=admin)
    assert r.json["fault"] is None and r.json["maintenance_reason"] == "RMA"
