"""Aggregates, zones, server groups, hints, operators and capacity, through the API with
real RQ jobs (in-process worker)."""

from __future__ import annotations

from typing import Any

from tests.helpers import make_available, seed_world
from workers import context as worker_context


def _racks(client: Any, admin: dict[str, str], node_ids: list[str], per_rack: int) -> None:
    """Put the nodes in racks of ``per_rack`` nodes, all racks in zone az1."""
    for r, start in enumerate(range(0, len(node_ids), per_rack)):
        resp = client.post(
            "/v1/aggregates",
            json={
                "name": f"rack-{r}",
                "availability_zone": "az1",
                "metadata": {"rack": f"r{r}", "row": "a"},
                "nodes": node_ids[start : start + per_rack],
            },
            headers=admin,
        )
        assert resp.status_code == 201, resp.json


def _boot(client: Any, w: Any, name: str, **extra: Any) -> str:
    resp = client.post(
        "/v1/instances",
        json={"name": name, "flavor": "bm.small", "image": w.image, **extra},
        headers=w.alice,
    )
    assert resp.status_code == 202, resp.json
    return str(resp.json["id"])


def test_anti_affinity_by_rack_fails_the_member_that_has_no_rack_left(ctx, client, jobs):
    w = seed_world(ctx)
    node_ids = make_available(ctx, 4, jobs)
    _racks(client, w.admin, node_ids, per_rack=2)  # 2 racks of 2 nodes
    group = client.post(
        "/v1/server-groups",
        json={"name": "db", "policy": "anti-affinity", "scope": "rack"},
        headers=w.alice,
    )
    assert group.status_code == 201, group.json
    ids = [_boot(client, w, f"db{i}", server_group=group.json["id"]) for i in range(3)]
    jobs()
    states = [client.get(f"/v1/instances/{i}", headers=w.alice).json for i in ids]
    assert [s["status"] for s in states] == ["ACTIVE", "ACTIVE", "ERROR"]
    fault = states[2]["fault"]
    assert fault["code"] == "no_valid_host"
    assert "server group anti-affinity (rack) 2" in fault["message"], fault
    # the two active members are in different racks
    admin_view = [client.get(f"/v1/instances/{i}", headers=w.admin).json for i in ids[:2]]
    racks = {node_ids.index(v["node_id"]) // 2 for v in admin_view}
    assert racks == {0, 1}
    members = client.get(f"/v1/server-groups/{group.json['id']}", headers=w.alice).json["members"]
    assert sorted(members) == sorted(ids)  # ERROR members stay until deleted


def test_affinity_and_hints_follow_the_first_member(ctx, client, jobs):
    w = seed_world(ctx)
    node_ids = make_available(ctx, 6, jobs)
    _racks(client, w.admin, node_ids, per_rack=3)
    first = _boot(client, w, "a1")
    jobs()
    first_node = client.get(f"/v1/instances/{first}", headers=w.admin).json["node_id"]
    same = _boot(client, w, "a2", scheduler_hints={"same_rack_as": [first]})
    other = _boot(client, w, "a3", scheduler_hints={"different_rack_from": first})
    jobs()
    rack = {n: i // 3 for i, n in enumerate(node_ids)}
    node_of = {
        i: client.get(f"/v1/instances/{i}", headers=w.admin).json["node_id"] for i in (same, other)
    }
    assert rack[node_of[same]] == rack[first_node]
    assert rack[node_of[other]] != rack[first_node]


def test_zone_request_and_unknown_zone(ctx, client, jobs):
    w = seed_world(ctx)
    node_ids = make_available(ctx, 2, jobs)
    client.post(
        "/v1/aggregates",
        json={"name": "z2", "availability_zone": "az2", "nodes": [node_ids[1]]},
        headers=w.admin,
    )
    bad = client.post(
        "/v1/instances",
        json={"name": "x", "flavor": "bm.small", "image": w.image, "availability_zone": "nope"},
        headers=w.alice,
    )
    assert bad.status_code == 422
    assert bad.json["errors"][0]["field"] == "availability_zone" and bad.json["allowed"] == ["az2"]
    inst = _boot(client, w, "z", availability_zone="az2")
    jobs()
    assert client.get(f"/v1/instances/{inst}", headers=w.admin).json["node_id"] == node_ids[1]


def test_hints_are_validated(ctx, client, jobs):
    w = seed_world(ctx)
    body = {"name": "h", "flavor": "bm.small", "image": w.image}
    for hints, needle in (
        ({"near": ["x"]}, "unknown scheduler hint"),
        ({"same_rack_as": ["no-such-server"]}, "not found"),
        ({"node_name": "node-0"}, "for admins"),
        ({"different_zone_from": []}, "list"),
    ):
        r = client.post("/v1/instances", json={**body, "scheduler_hints": hints}, headers=w.alice)
        assert r.status_code == 422, (hints, r.json)
        assert needle in r.json["detail"] and r.json["errors"][0]["field"] == "scheduler_hints"


def test_restricted_aggregate_and_tenant_safe_no_valid_host(ctx, client, jobs):
    w = seed_world(ctx)
    node_ids = make_available(ctx, 2, jobs)
    r = client.post(
        "/v1/aggregates",
        json={"name": "beta-only", "nodes": node_ids, "projects": [w.bob_project]},
        headers=w.admin,
    )
    assert r.status_code == 201
    inst = _boot(client, w, "x")
    jobs()
    tenant = client.get(f"/v1/instances/{inst}", headers=w.alice).json
    admin = client.get(f"/v1/instances/{inst}", headers=w.admin).json
    assert tenant["status"] == "ERROR"
    # the tenant is told about the nodes it could ever get: none
    assert tenant["fault"] == {
        "code": "no_valid_host",
        "message": "No valid host: 0 of 0 nodes left (no nodes enrolled)",
    }
    assert "aggregate_tenancy 2" in admin["fault"]["details"]["message"]
    assert admin["fault"]["details"]["removed"] == {"aggregate_tenancy": 2}
    # the full explanation is an admin-only event; the tenant's events do not carry it
    url = "/v1/events?type=scheduler.no_valid_host"
    (event,) = client.get(url, headers=w.admin).json["events"]
    assert event["resource_id"] == inst and event["payload"]["removed"] == {"aggregate_tenancy": 2}
    assert client.get(url, headers=w.alice).json["events"] == []
    tenant_events = client.get(f"/v1/events?resource_id={inst}", headers=w.alice).json["events"]
    assert tenant_events and all("aggregate" not in str(e["payload"]) for e in tenant_events)


def test_capability_operators_select_nodes(ctx, client, jobs):
    w = seed_world(ctx)
    epyc, xeon = make_available(ctx, 2, jobs)
    for node_id, model in ((epyc, "AMD EPYC 9654"), (xeon, "Intel Xeon 8480")):
        r = client.patch(
            f"/v1/nodes/{node_id}",
            json=[{"op": "add", "path": "/capabilities/cpu_model", "value": model}],
            headers=w.admin,
        )
        assert r.status_code == 200, r.json
    r = client.post(
        "/v1/flavors",
        json={
            "name": "bm.epyc",
            "vcpus": 4,
            "ram_mb": 8192,
            "disk_gb": 50,
            "extra_specs": {"capabilities:cpu_model": "<in> EPYC"},
        },
        headers=w.admin,
    )
    assert r.status_code == 201, r.json
    bad = client.post(
        "/v1/flavors",
        json={
            "name": "bm.bad",
            "vcpus": 1,
            "ram_mb": 1,
            "disk_gb": 1,
            "extra_specs": {"capabilities:cpus": ">= lots"},
        },
        headers=w.admin,
    )
    assert (
        bad.status_code == 422 and bad.json["errors"][0]["field"] == "extra_specs.capabilities:cpus"
    )
    inst = client.post(
        "/v1/instances",
        json={"name": "e", "flavor": "bm.epyc", "image": w.image},
        headers=w.alice,
    ).json["id"]
    jobs()
    assert client.get(f"/v1/instances/{inst}", headers=w.admin).json["node_id"] == epyc


def test_capacity_for_tenant_and_admin(ctx, client, jobs):
    w = seed_world(ctx)
    node_ids = make_available(ctx, 3, jobs)
    client.post(
        "/v1/aggregates",
        json={"name": "z1", "availability_zone": "az1", "nodes": node_ids[:2]},
        headers=w.admin,
    )
    client.post(
        "/v1/aggregates",
        json={"name": "bob", "nodes": [node_ids[2]], "projects": [w.bob_project]},
        headers=w.admin,
    )
    alice = client.get("/v1/flavors/bm.small/capacity", headers=w.alice)
    assert alice.status_code == 200, alice.json
    assert alice.json["nodes"] == 2 and "by_zone" not in alice.json
    client.put(f"/v1/projects/{w.alice_project}/quota", json={"instances": 1}, headers=w.admin)
    alice = client.get("/v1/flavors/bm.small/capacity", headers=w.alice).json
    assert (alice["nodes"], alice["quota_allows"], alice["instances"]) == (2, 1, 1)
    admin = client.get("/v1/flavors/bm.small/capacity", headers=w.admin).json
    assert admin["nodes"] == 3 and admin["by_zone"] == {"": 1, "az1": 2}


def test_a_node_lent_to_a_tenant_is_scheduled_for_it(ctx, client, jobs):
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    bad = client.patch(
        f"/v1/nodes/{node_id}",
        json=[{"op": "replace", "path": "/lessee", "value": "no-such-project"}],
        headers=w.admin,
    )
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "lessee"
    r = client.patch(
        f"/v1/nodes/{node_id}",
        json=[
            {"op": "replace", "path": "/owner", "value": w.bob_project},
            {"op": "replace", "path": "/lessee", "value": w.alice_project},
        ],
        headers=w.admin,
    )
    assert r.status_code == 200 and r.json["lessee"] == w.alice_project, r.json
    listed = client.get(f"/v1/nodes?lessee={w.alice_project}", headers=w.admin).json["nodes"]
    assert [n["uuid"] for n in listed] == [node_id] and listed[0]["lessee"] == w.alice_project
    inst = _boot(client, w, "lent")
    jobs()
    assert client.get(f"/v1/instances/{inst}", headers=w.admin).json["node_id"] == node_id


def test_rack_spread_weigher_from_configuration(ctx, client, jobs, monkeypatch):
    monkeypatch.setenv("BMS_SCHEDULER_WEIGHERS", "best_fit=1,rack_spread=2")
    worker_context.current.cache_clear()
    w = seed_world(ctx)
    # equal nodes: without spreading, ties go by id, so both would land in rack 0
    node_ids = sorted(make_available(ctx, 4, jobs))
    _racks(client, w.admin, node_ids, per_rack=2)
    rack = {n: i // 2 for i, n in enumerate(node_ids)}
    placed = []
    for i in range(2):  # one at a time, so the second sees where the first went
        inst = _boot(client, w, f"s{i}")
        jobs()
        placed.append(rack[client.get(f"/v1/instances/{inst}", headers=w.admin).json["node_id"]])
    assert sorted(placed) == [0, 1]
