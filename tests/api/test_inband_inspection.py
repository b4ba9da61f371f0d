"""In-band inspection: the node netboots the deploy ramdisk, its agent reports what it sees,
and that is applied. Real jobs and a ``fake-agent`` node (simulated BMC, real agent
hand-over); the test plays the agent through the API. The real agent's ``inventory`` runs
under busybox (tests/netboot) and on a QEMU machine (tests/lab/test_uefi.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from portal.core.db import utcnow
from portal.core.models import Node
from tests.api.test_agent_protocol import Agent, node_state
from tests.helpers import node_body, seed_world
from workers.jobs.reconcile import reconcile

MAC = "52:54:00:12:00:01"
REPORT = {
    "cpus": 4,
    "cpu_model": "QEMU Virtual CPU",
    "cpu_arch": "x86_64",
    "boot_mode": "uefi",
    "memory_mb": 7977,
    "disks": [
        {"name": "sr0", "size_bytes": 1 << 20, "removable": True},
        {"name": "vdb", "size_bytes": 500 * 1024**3, "removable": False},
        {"name": "vda", "size_bytes": 40 * 1024**3 + 5, "removable": False},
    ],
    "nics": [
        {"name": "eth0", "mac": MAC, "link": True},
        {"name": "eth1", "mac": "52:54:00:AB:CD:EF", "link": False},
    ],
}


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


def manageable(client: Any, world: Any, jobs: Any, **driver_info: Any) -> str:
    body = node_body(1, driver="fake-agent")
    body["driver_info"] = {**body["driver_info"], **driver_info}
    r = client.post("/v1/nodes", json=body, headers=world.admin)
    assert r.status_code == 201, r.json
    node_id = str(r.json["uuid"])
    provision(client, world, node_id, "manage")
    jobs()
    return node_id


def provision(client: Any, world: Any, node_id: str, target: str) -> Any:
    return client.put(
        f"/v1/nodes/{node_id}/states/provision", json={"target": target}, headers=world.admin
    )


def test_the_agents_inventory_is_applied(client, world, jobs, ctx) -> None:
    node_id = manageable(client, world, jobs, inspect_mode="agent")
    assert provision(client, world, node_id, "inspect").status_code == 202
    jobs()
    assert node_state(ctx, node_id) == "inspect wait"  # no job runs while the agent works
    agent = Agent(client, ctx, node_id)
    assert agent.lookup().status_code == 200
    cmd = agent.next_command()
    assert cmd["name"] == "inventory" and cmd["args"] == {}
    assert agent.report(cmd["id"], result=REPORT).status_code == 202
    jobs()
    node = client.get(f"/v1/nodes/{node_id}", headers=world.admin).json
    assert node["provision_state"] == "manageable", node["last_error"]
    assert node["power_state"] == "power off"
    # the root disk is the first fixed one by name (what write_image writes), in whole GiB
    assert node["properties"] == {
        "cpus": 4,
        "memory_mb": 7977,
        "local_gb": 40,
        "cpu_arch": "x86_64",
    }
    assert node["capabilities"]["boot_mode"] == "uefi"
    ports = {p["address"] for p in node["ports"]}
    assert ports == {MAC, "52:54:00:ab:cd:ef"}
    inventory = client.get(f"/v1/nodes/{node_id}/inventory", headers=world.admin).json
    assert inventory["source"] == "agent"
    assert inventory["inventory"]["agent"]["cpu_model"] == "QEMU Virtual CPU"
    # the operation is over: its agent token and boot script are gone
    assert agent.heartbeat().status_code == 403
    assert not (ctx.settings.var_dir / "netboot" / "nodes" / node_id).exists()


def test_a_failed_inventory_fails_the_inspection(client, world, jobs, ctx) -> None:
    node_id = manageable(client, world, jobs, inspect_mode="agent")
    provision(client, world, node_id, "inspect")
    jobs()
    agent = Agent(client, ctx, node_id)
    agent.lookup()
    cmd = agent.next_command()
    agent.report(cmd["id"], ok=False, error="no /sys")
    jobs()
    node = client.get(f"/v1/nodes/{node_id}", headers=world.admin).json
    assert node["provision_state"] == "inspect failed"
    assert "inventory failed: no /sys" in node["last_error"]
    assert node["power_state"] == "power off"
    # retry from inspect failed
    assert provision(client, world, node_id, "inspect").status_code == 202


def test_no_agent_within_the_timeout(client, world, jobs, ctx) -> None:
    node_id = manageable(client, world, jobs, inspect_mode="agent")
    provision(client, world, node_id, "inspect")
    jobs()
    with ctx.session() as s:
        s.get_one(Node, node_id).provision_updated_at = utcnow() - timedelta(hours=1)
    assert reconcile()["nodes_failed"] == 1
    jobs()
    node = client.get(f"/v1/nodes/{node_id}", headers=world.admin).json
    assert node["provision_state"] == "inspect failed"
    assert "no sign of the deploy agent" in node["last_error"]
    assert node["power_state"] == "power off"


def test_bad_inspect_mode_and_no_pxe_port(client, world, jobs, ctx) -> None:
    node_id = manageable(client, world, jobs, inspect_mode="telepathy")
    provision(client, world, node_id, "inspect")
    jobs()
    node = client.get(f"/v1/nodes/{node_id}", headers=world.admin).json
    assert node["provision_state"] == "inspect failed"
    assert "inspect_mode must be one of bmc, agent" in node["last_error"]

    body = node_body(2, driver="fake-agent", ports=[])
    body["driver_info"]["inspect_mode"] = "agent"
    bare = client.post("/v1/nodes", json=body, headers=world.admin).json["uuid"]
    provision(client, world, bare, "manage")
    jobs()
    provision(client, world, bare, "inspect")
    jobs()
    node = client.get(f"/v1/nodes/{bare}", headers=world.admin).json
    assert node["provision_state"] == "inspect failed"
    assert "needs a port with pxe_enabled" in node["last_error"]


def test_bmc_mode_stays_the_default(client, world, jobs, ctx) -> None:
    node_id = manageable(client, world, jobs)
    provision(client, world, node_id, "inspect")
    jobs()
    assert node_state(ctx, node_id) == "manageable"  # the fake BMC answered in one job
