"""The whole lifecycle through the HTTP API with a real RQ worker (in-process, burst)."""

from __future__ import annotations

from sqlalchemy import select

from portal.core.models import Event, Node
from tests.helpers import make_available, seed_world
from workers import context as worker_context


def test_boot_and_delete_returns_node_to_pool(ctx, client, jobs):
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    r = client.post(
        "/v1/instances",
        json={"name": "web1", "flavor": "bm.small", "image": w.image},
        headers=w.alice,
    )
    assert r.status_code == 202, r.json
    assert r.headers["Location"] == f"/v1/instances/{r.json['id']}"
    inst_id = r.json["id"]
    assert r.json["status"] == "BUILD"
    jobs()
    r = client.get(f"/v1/instances/{inst_id}", headers=w.alice)
    assert r.json["status"] == "ACTIVE", r.json
    assert r.json["progress"] == 100
    assert len(r.json["addresses"]) == 1 and r.json["addresses"][0]["address"].startswith(
        "192.0.2."
    )
    node = client.get(f"/v1/nodes/{node_id}", headers=w.admin).json
    assert node["provision_state"] == "active" and node["instance_uuid"] == inst_id
    assert node["power_state"] == "power on"
    assert node["driver_info"]["bmc_password"] == "******"

    r = client.delete(f"/v1/instances/{inst_id}", headers=w.alice)
    assert r.status_code == 202 and r.json["status"] == "DELETING"
    jobs()
    assert client.get(f"/v1/instances/{inst_id}", headers=w.alice).json["status"] == "DELETED"
    node = client.get(f"/v1/nodes/{node_id}", headers=w.admin).json
    assert node["provision_state"] == "available" and node["instance_uuid"] is None
    assert node["reservation"] is None and node["power_state"] == "power off"

    with ctx.session() as s:
        inst_events = [
            (e.payload.get("previous"), e.payload.get("status"))
            for e in s.scalars(
                select(Event)
                .where(Event.resource_id == inst_id, Event.type == "instance.status")
                .order_by(Event.id)
            )
        ]
        node_states = [
            e.payload["state"]
            for e in s.scalars(
                select(Event)
                .where(Event.resource_id == node_id, Event.type == "node.provision_state")
                .order_by(Event.id)
            )
        ]
    assert inst_events == [("BUILD", "ACTIVE"), ("ACTIVE", "DELETING"), ("DELETING", "DELETED")]
    assert node_states == [
        "verifying",
        "manageable",
        "cleaning",
        "available",
        "deploying",
        "active",
        "deleting",
        "cleaning",
        "available",
    ]
    quota = client.get(f"/v1/projects/{w.alice_project}/quota", headers=w.alice).json
    assert quota["in_use"] == {"instances": 0, "vcpus": 0, "ram_mb": 0, "networks": 0, "subnets": 0}


def test_no_valid_host_explains_why(ctx, client, jobs):
    w = seed_world(ctx)
    make_available(
        ctx,
        2,
        jobs,
        properties={"cpus": 2, "memory_mb": 4096, "local_gb": 100, "cpu_arch": "x86_64"},
    )
    inst = client.post(
        "/v1/instances", json={"name": "big", "flavor": w.flavor, "image": w.image}, headers=w.alice
    ).json
    jobs()
    shown = client.get(f"/v1/instances/{inst['id']}", headers=w.alice).json
    assert shown["status"] == "ERROR"
    assert shown["fault"]["code"] == "no_valid_host"
    assert (
        "0 of 2 nodes left" in shown["fault"]["message"] and "cpus 2" in shown["fault"]["message"]
    )
    admin_view = client.get(f"/v1/instances/{inst['id']}", headers=w.admin).json
    assert admin_view["fault"]["details"]["removed"]["cpus"] == 2
    with ctx.session() as s:
        assert all(n.instance_id is None for n in s.scalars(select(Node)))


def _boot_failing(ctx, client, jobs, w):
    (node_id,) = make_available(ctx, 1, jobs)
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        node.driver_info = {**node.driver_info, "fake_fail": "write_image"}
    inst = client.post(
        "/v1/instances", json={"name": "x", "flavor": w.flavor, "image": w.image}, headers=w.alice
    ).json
    jobs()
    shown = client.get(f"/v1/instances/{inst['id']}", headers=w.alice).json
    assert shown["status"] == "ERROR" and "write_image" in shown["fault"]["message"]
    return node_id, inst["id"]


def test_a_failed_deploy_gives_its_node_back_cleaned(ctx, client, jobs):
    w = seed_world(ctx)
    node_id, inst_id = _boot_failing(ctx, client, jobs, w)
    # torn down and cleaned (the partly written disk wiped), back in the pool
    node = client.get(f"/v1/nodes/{node_id}", headers=w.admin).json
    assert node["provision_state"] == "available" and node["instance_uuid"] is None
    assert node["reservation"] is None and "write_image" in node["last_error"]  # kept: why
    with ctx.session() as s:
        states = [
            e.payload.get("state")
            for e in s.query(Event)
            .filter_by(resource_id=node_id, type="node.provision_state")
            .order_by(Event.id)
        ]
        assert states[-4:] == ["deploy failed", "deleting", "cleaning", "available"], states
        assert s.get_one(Node, node_id).recent_failures == 1  # ranked after healthy nodes
    # the instance stays in ERROR with its fault, holding no node, until its tenant deletes it
    shown = client.get(f"/v1/instances/{inst_id}", headers=w.admin).json
    assert shown["status"] == "ERROR" and shown["node_id"] is None
    assert client.delete(f"/v1/instances/{inst_id}", headers=w.alice).status_code == 202
    jobs()
    assert client.get(f"/v1/instances/{inst_id}", headers=w.alice).json["status"] == "DELETED"
    assert client.get(f"/v1/nodes/{node_id}", headers=w.admin).json["provision_state"] == (
        "available"
    )


def test_with_release_off_the_node_stays_for_inspection_and_delete_recovers(
    ctx, client, jobs, monkeypatch
):
    monkeypatch.setenv("BMS_RELEASE_FAILED_DEPLOYS", "0")
    worker_context.current.cache_clear()
    w = seed_world(ctx)
    node_id, inst_id = _boot_failing(ctx, client, jobs, w)
    node = client.get(f"/v1/nodes/{node_id}", headers=w.admin).json
    assert node["provision_state"] == "deploy failed" and "write_image" in node["last_error"]
    assert node["reservation"] is None and node["power_state"] == "power off"
    with ctx.session() as s:
        n = s.get_one(Node, node_id)
        n.driver_info = {k: v for k, v in n.driver_info.items() if k != "fake_fail"}
    assert client.delete(f"/v1/instances/{inst_id}", headers=w.alice).status_code == 202
    jobs()
    assert (
        client.get(f"/v1/nodes/{node_id}", headers=w.admin).json["provision_state"] == "available"
    )


def test_second_delete_after_failed_teardown_frees_the_instance(ctx, client, jobs):
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    inst = client.post(
        "/v1/instances", json={"name": "x", "flavor": w.flavor, "image": w.image}, headers=w.alice
    ).json
    jobs()
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        node.driver_info = {**node.driver_info, "fake_fail": "power"}  # tear-down's power off
    client.delete(f"/v1/instances/{inst['id']}", headers=w.alice)
    jobs()
    assert client.get(f"/v1/instances/{inst['id']}", headers=w.alice).json["status"] == "ERROR"
    assert client.get(f"/v1/nodes/{node_id}", headers=w.admin).json["provision_state"] == (
        "clean failed"
    )
    assert client.delete(f"/v1/instances/{inst['id']}", headers=w.alice).status_code == 202
    jobs()
    assert client.get(f"/v1/instances/{inst['id']}", headers=w.alice).json["status"] == "DELETED"
    node = client.get(f"/v1/nodes/{node_id}", headers=w.admin).json
    assert node["instance_uuid"] is None and "power" in node["last_error"]
    quota = client.get(f"/v1/projects/{w.alice_project}/quota", headers=w.alice).json
    assert quota["in_use"]["instances"] == 0
