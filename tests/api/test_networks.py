"""Tenant networks through the HTTP API: segment ranges, networks, subnets, instance NICs,
isolation, quotas, events (both databases)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from portal.core.errors import Conflict
from portal.services import identity, networks
from tests.helpers import make_available, seed_world


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


def _range(client, w, physnet="physnet1", low=100, high=199) -> dict[str, Any]:
    r = client.post(
        "/v1/segment-ranges",
        json={"physical_network": physnet, "minimum": low, "maximum": high},
        headers=w.admin,
    )
    assert r.status_code == 201, r.json
    return r.json


def _net(client, who, name, **extra) -> dict[str, Any]:
    r = client.post("/v1/networks", json={"name": name, **extra}, headers=who)
    assert r.status_code == 201, r.json
    return r.json


def _subnet(client, who, network, cidr="10.1.0.0/24", **extra) -> dict[str, Any]:
    r = client.post("/v1/subnets", json={"network": network, "cidr": cidr, **extra}, headers=who)
    assert r.status_code == 201, r.json
    return r.json


def _fields(r) -> list[str]:
    return [e["field"] for e in r.json.get("errors", [])]


# -- segment ranges ---------------------------------------------------------------------------


def test_segment_ranges_are_admin_only_and_never_overlap(client, world) -> None:
    w = world
    rng = _range(client, w, low=100, high=199)
    assert rng["network_type"] == "vlan"
    r = client.post(
        "/v1/segment-ranges",
        json={"physical_network": "physnet1", "minimum": 150, "maximum": 250},
        headers=w.admin,
    )
    assert r.status_code == 409 and rng["id"] in r.json["detail"]
    _range(client, w, low=200, high=250)  # adjacent is fine
    _range(client, w, physnet="physnet2", low=100, high=199)  # another physnet too
    r = client.post(
        "/v1/segment-ranges",
        json={"physical_network": "physnet1", "minimum": 300, "maximum": 299},
        headers=w.admin,
    )
    assert r.status_code == 422 and _fields(r) == ["minimum"]
    r = client.post(
        "/v1/segment-ranges",
        json={"physical_network": "physnet1", "minimum": 0, "maximum": 4095},
        headers=w.admin,
    )
    assert r.status_code == 422 and set(_fields(r)) == {"minimum", "maximum"}
    assert client.get("/v1/segment-ranges", headers=w.alice).status_code == 403
    assert (
        client.post(
            "/v1/segment-ranges",
            json={"physical_network": "x", "minimum": 1, "maximum": 2},
            headers=w.alice,
        ).status_code
        == 403
    )
    listed = client.get("/v1/segment-ranges?physical_network=physnet1", headers=w.admin).json
    assert [(x["minimum"], x["maximum"]) for x in listed["segment_ranges"]] == [
        (100, 199),
        (200, 250),
    ]


def test_a_range_in_use_cannot_be_deleted(client, world) -> None:
    w = world
    rng = _range(client, w, low=10, high=11)
    net = _net(client, w.alice, "a-net")
    r = client.delete(f"/v1/segment-ranges/{rng['id']}", headers=w.admin)
    assert r.status_code == 409 and r.json["networks"] == [{"id": net["id"], "name": "a-net"}]
    assert client.delete(f"/v1/networks/{net['id']}", headers=w.alice).status_code == 204
    assert client.delete(f"/v1/segment-ranges/{rng['id']}", headers=w.admin).status_code == 204


# -- networks -----------------------------------------------------------------------------------


def test_tenant_networks_get_the_lowest_free_vlan_which_delete_frees(client, world) -> None:
    w = world
    _range(client, w, low=100, high=102)
    a = _net(client, w.alice, "a1")
    assert a["project_id"] == w.alice_project and a["network_type"] == "vlan"
    assert a["segmentation_id"] is None and a["physical_network"] is None  # admins only
    seen = client.get(f"/v1/networks/{a['id']}", headers=w.admin).json
    assert (seen["physical_network"], seen["segmentation_id"]) == ("physnet1", 100)
    b = _net(client, w.bob, "b1")
    c = _net(client, w.alice, "a2")
    vlan = {
        n["name"]: n["segmentation_id"]
        for n in client.get("/v1/networks?limit=1000", headers=w.admin).json["networks"]
    }
    assert (vlan["a1"], vlan["b1"], vlan["a2"]) == (100, 101, 102)
    r = client.post("/v1/networks", json={"name": "a3"}, headers=w.alice)
    assert r.status_code == 409 and r.json["physical_network"] == "physnet1"
    assert "physnet1" in r.json["detail"]
    assert client.delete(f"/v1/networks/{b['id']}", headers=w.bob).status_code == 204
    d = _net(client, w.alice, "a3")
    assert client.get(f"/v1/networks/{d['id']}", headers=w.admin).json["segmentation_id"] == 101
    assert c["id"] != d["id"]


def test_no_range_on_the_physnet_is_a_409_saying_what_to_do(client, world) -> None:
    r = client.post("/v1/networks", json={"name": "lonely"}, headers=world.alice)
    assert r.status_code == 409 and "/v1/segment-ranges" in r.json["detail"]


def test_provider_attributes_are_for_admins(client, world) -> None:
    w = world
    _range(client, w)
    for extra in (
        {"shared": True},
        {"segmentation_id": 5},
        {"physical_network": "physnet2"},
        {"network_type": "flat"},
        {"project_id": w.bob_project},
    ):
        r = client.post("/v1/networks", json={"name": "x", **extra}, headers=w.alice)
        assert r.status_code == 403, (extra, r.json)
    # Admins: an explicit VLAN outside the tenant range, a flat network, a shared one.
    ext = _net(client, w.admin, "ext", segmentation_id=3000, shared=True)
    assert ext["project_id"] is None and ext["segmentation_id"] == 3000
    r = client.post("/v1/networks", json={"name": "ext2", "segmentation_id": 3000}, headers=w.admin)
    assert r.status_code == 409 and _fields(r) == ["segmentation_id"]
    # The provider network is physnet1's flat network: one per physnet.
    r = client.post("/v1/networks", json={"name": "flat2", "network_type": "flat"}, headers=w.admin)
    assert r.status_code == 409 and _fields(r) == ["physical_network"]
    flat = _net(client, w.admin, "flat3", network_type="flat", physical_network="physnet9")
    assert flat["segmentation_id"] is None
    # Tenant range ids an admin took are skipped by the allocator.
    _net(client, w.admin, "pinned", segmentation_id=100)
    a = _net(client, w.alice, "a")
    assert client.get(f"/v1/networks/{a['id']}", headers=w.admin).json["segmentation_id"] == 101
    # An admin may make a network for a project; it counts against that project.
    owned = _net(client, w.admin, "for-bob", project_id=w.bob_project)
    assert owned["project_id"] == w.bob_project
    assert (
        client.get(f"/v1/projects/{w.bob_project}/quota", headers=w.bob).json["in_use"]["networks"]
        == 1
    )


def test_names_are_unique_per_project_and_lookups_take_names(client, world) -> None:
    w = world
    _range(client, w)
    a = _net(client, w.alice, "web")
    b = _net(client, w.bob, "web")  # another project: fine
    r = client.post("/v1/networks", json={"name": "web"}, headers=w.alice)
    assert r.status_code == 409 and _fields(r) == ["name"]
    assert client.get("/v1/networks/web", headers=w.alice).json["id"] == a["id"]
    assert client.get("/v1/networks/web", headers=w.bob).json["id"] == b["id"]
    r = client.get("/v1/networks/web", headers=w.admin)
    assert r.status_code == 409 and sorted(r.json["matches"]) == sorted([a["id"], b["id"]])
    r = client.patch(f"/v1/networks/{a['id']}", json={"name": "db"}, headers=w.alice)
    assert r.status_code == 200 and r.json["name"] == "db"
    _net(client, w.alice, "web")
    r = client.patch("/v1/networks/db", json={"name": "web"}, headers=w.alice)
    assert r.status_code == 409 and _fields(r) == ["name"]
    r = client.patch("/v1/networks/db", json={"description": "the db tier"}, headers=w.alice)
    assert r.json["description"] == "the db tier"


def test_concurrent_creates_get_distinct_vlans(ctx, world, monkeypatch) -> None:
    """30 threads create networks at once (each its own transaction), for two projects and
    for the admin (no project, so no quota row serializing them): every VLAN id is handed
    out once, whatever the database (the unique key refuses a second holder and the loser
    picks again)."""
    from sqlalchemy import select

    from portal.core.models import Network
    from portal.services import segments

    with ctx.session() as s:
        segments.create_range(
            s, {"physical_network": "physnet1", "minimum": 500, "maximum": 529}, identity.SYSTEM
        )
        for pid in (world.alice_project, world.bob_project):
            identity.set_quota(ctx, s, pid, {"networks": -1}, identity.SYSTEM)
        callers = [_principal(s, "alice"), _principal(s, "bob"), _principal(s, "root")]
    clashes: list[int | None] = []
    try_insert = networks._try_insert

    def counting(s, net):  # type: ignore[no-untyped-def]
        ok = try_insert(s, net)
        if not ok:
            clashes.append(net.segmentation_id)
        return ok

    monkeypatch.setattr(networks, "_try_insert", counting)
    errors: list[BaseException] = []
    barrier = threading.Barrier(30)

    def create(i: int) -> None:
        try:
            barrier.wait()
            with ctx.session() as s:
                networks.create(ctx, s, {"name": f"n{i}"}, callers[i % 3])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with ctx.session() as s:
        ids = list(s.scalars(select(Network.segmentation_id).where(Network.network_type == "vlan")))
    assert sorted(ids) == list(range(500, 530))
    print(f"{ctx.db.dialect}: {len(clashes)} VLAN clashes retried")
    if ctx.db.dialect == "sqlite":
        assert clashes == []  # one writer at a time: nothing to retry
    with ctx.session() as s, pytest.raises(Conflict, match="physnet1"):
        networks.create(ctx, s, {"name": "one-too-many"}, callers[0])
    # Deleting one frees its id for the next create.
    with ctx.session() as s:
        net = s.scalars(select(Network).where(Network.segmentation_id == 517)).one()
        owner = next(c for c in callers if c.project_id == net.project_id or c.is_admin)
        networks.delete(ctx, s, net, owner)
    with ctx.session() as s:
        assert networks.create(ctx, s, {"name": "reuse"}, callers[1]).segmentation_id == 517


def _principal(s, name: str):
    from sqlalchemy import select

    from tenants.models import User
    from tenants.principal import Principal

    user = s.scalars(select(User).where(User.name == name)).one()
    return Principal(user.id, user.name, user.project_id, user.role)


def test_network_quota(client, world) -> None:
    w = world
    _range(client, w)
    r = client.put(
        f"/v1/projects/{w.alice_project}/quota", json={"networks": 1, "subnets": 1}, headers=w.admin
    )
    assert r.status_code == 200 and r.json["limits"]["networks"] == 1
    net = _net(client, w.alice, "only")
    r = client.post("/v1/networks", json={"name": "second"}, headers=w.alice)
    assert r.status_code == 403 and "networks (limit 1, in use 1" in r.json["detail"]
    _subnet(client, w.alice, "only")
    r = client.post("/v1/subnets", json={"network": "only", "cidr": "10.9.0.0/24"}, headers=w.alice)
    assert r.status_code == 403 and "subnets" in r.json["detail"]
    quota = client.get(f"/v1/projects/{w.alice_project}/quota", headers=w.alice).json
    assert (quota["in_use"]["networks"], quota["in_use"]["subnets"]) == (1, 1)
    assert client.delete(f"/v1/networks/{net['id']}", headers=w.alice).status_code == 204
    quota = client.get(f"/v1/projects/{w.alice_project}/quota", headers=w.alice).json
    assert (quota["in_use"]["networks"], quota["in_use"]["subnets"]) == (0, 0)
    _net(client, w.alice, "again")


# -- subnets ------------------------------------------------------------------------------------


def test_subnet_defaults_and_ipv6(client, world) -> None:
    w = world
    _range(client, w)
    _net(client, w.alice, "app")
    sub = _subnet(client, w.alice, "app", "10.1.0.0/24", name="v4", dns_nameservers=["10.1.0.2"])
    assert sub["ip_version"] == 4 and sub["gateway_ip"] == "10.1.0.1"
    assert sub["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.0.254"}]
    mid = _subnet(client, w.alice, "app", "10.2.0.0/24", gateway_ip="10.2.0.100")
    assert mid["allocation_pools"] == [
        {"start": "10.2.0.1", "end": "10.2.0.99"},
        {"start": "10.2.0.101", "end": "10.2.0.254"},
    ]
    none = _subnet(client, w.alice, "app", "10.3.0.0/29", gateway_ip=None)
    assert none["gateway_ip"] is None
    assert none["allocation_pools"] == [{"start": "10.3.0.1", "end": "10.3.0.6"}]
    v6 = _subnet(
        client,
        w.alice,
        "app",
        "2001:db8:1::/64",
        host_routes=[{"destination": "2001:db8:ff::/48", "nexthop": "2001:db8:1::fe"}],
    )
    assert v6["ip_version"] == 6 and v6["gateway_ip"] == "2001:db8:1::1"
    assert v6["allocation_pools"] == [
        {"start": "2001:db8:1::2", "end": "2001:db8:1:0:ffff:ffff:ffff:ffff"}
    ]
    net = client.get("/v1/networks/app", headers=w.alice).json
    assert len(net["subnets"]) == 4
    r = client.patch(
        f"/v1/subnets/{sub['id']}",
        json={"dns_nameservers": ["9.9.9.9", "2620:fe::fe"], "name": "renamed"},
        headers=w.alice,
    )
    assert r.status_code == 200 and r.json["dns_nameservers"] == ["9.9.9.9", "2620:fe::fe"]
    listed = client.get(f"/v1/subnets?network_id={net['id']}&ip_version=6", headers=w.alice).json
    assert [x["id"] for x in listed["subnets"]] == [v6["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cidr": "10.1.0.5/24"}, "cidr"),
        ({"cidr": "banana"}, "cidr"),
        ({"cidr": "10.1.0.0/31"}, "cidr"),
        ({"cidr": "10.1.0.0/24", "ip_version": 6}, "cidr"),
        ({"cidr": "10.1.0.0/24", "gateway_ip": "10.2.0.1"}, "gateway_ip"),
        ({"cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.255"}, "gateway_ip"),
        ({"cidr": "10.1.0.0/24", "gateway_ip": "2001:db8::1"}, "gateway_ip"),
        (
            {"cidr": "10.1.0.0/24", "allocation_pools": [{"start": "10.1.0.1", "end": "10.1.0.9"}]},
            "allocation_pools.0",
        ),
        (
            {
                "cidr": "10.1.0.0/24",
                "allocation_pools": [
                    {"start": "10.1.0.10", "end": "10.1.0.20"},
                    {"start": "10.1.0.20", "end": "10.1.0.30"},
                ],
            },
            "allocation_pools.1",
        ),
        (
            {"cidr": "10.1.0.0/24", "allocation_pools": [{"start": "10.1.0.9", "end": "10.1.0.5"}]},
            "allocation_pools.0",
        ),
        (
            {"cidr": "10.1.0.0/24", "allocation_pools": [{"start": "10.1.0.9", "end": "10.2.0.5"}]},
            "allocation_pools.0.end",
        ),
        ({"cidr": "10.1.0.0/24", "dns_nameservers": ["dns.example"]}, "dns_nameservers.0"),
        ({"cidr": "10.1.0.0/24", "dns_nameservers": ["1.1.1.1", "1.1.1.1"]}, "dns_nameservers.1"),
        (
            {
                "cidr": "10.1.0.0/24",
                "host_routes": [{"destination": "10.9.0.1/16", "nexthop": "10.1.0.3"}],
            },
            "host_routes.0.destination",
        ),
        (
            {
                "cidr": "10.1.0.0/24",
                "host_routes": [{"destination": "10.9.0.0/16", "nexthop": "10.7.0.3"}],
            },
            "host_routes.0.nexthop",
        ),
        ({"cidr": "10.0.0.0/16"}, "cidr"),  # overlaps the existing 10.0.5.0/24
        ({"network": "nope", "cidr": "10.1.0.0/24"}, "network"),
    ],
)
def test_subnet_validation_names_the_field(client, world, body, field) -> None:
    w = world
    _range(client, w)
    _net(client, w.alice, "app")
    _subnet(client, w.alice, "app", "10.0.5.0/24")
    r = client.post("/v1/subnets", json={"network": "app", **body}, headers=w.alice)
    assert r.status_code == 422, r.json
    assert _fields(r) == [field], r.json


# -- isolation ----------------------------------------------------------------------------------


def test_another_tenants_network_and_subnet_are_not_found(client, world) -> None:
    w = world
    _range(client, w)
    net = _net(client, w.alice, "secret")
    sub = _subnet(client, w.alice, "secret")
    for url in (f"/v1/networks/{net['id']}", "/v1/networks/secret", f"/v1/subnets/{sub['id']}"):
        assert client.get(url, headers=w.bob).status_code == 404, url
        assert client.delete(url, headers=w.bob).status_code == 404, url
        assert client.patch(url, json={"name": "mine"}, headers=w.bob).status_code == 404, url
    r = client.post(
        "/v1/subnets", json={"network": net["id"], "cidr": "10.8.0.0/24"}, headers=w.bob
    )
    assert r.status_code == 422 and _fields(r) == ["network"]
    bob_nets = client.get("/v1/networks", headers=w.bob).get_data(as_text=True)
    bob_subs = client.get("/v1/subnets", headers=w.bob).get_data(as_text=True)
    assert net["id"] not in bob_nets and sub["id"] not in bob_subs
    r = client.post(
        "/v1/instances",
        json={"name": "vm", "flavor": w.flavor, "image": w.image, "networks": ["secret"]},
        headers=w.bob,
    )
    assert r.status_code == 422 and _fields(r) == ["networks.0.network"]
    # The admin sees all, and filters by project.
    listed = client.get(f"/v1/networks?project_id={w.alice_project}", headers=w.admin).json
    assert [n["id"] for n in listed["networks"]] == [net["id"]]


def test_shared_networks_are_visible_and_read_only(client, world) -> None:
    w = world
    shared = _net(
        client, w.admin, "public", network_type="flat", physical_network="ext", shared=True
    )
    sub = _subnet(client, w.admin, shared["id"], "198.51.100.0/24")
    for who in (w.alice, w.bob):
        assert client.get("/v1/networks/public", headers=who).status_code == 200
        assert client.get(f"/v1/subnets/{sub['id']}", headers=who).status_code == 200
        assert (
            client.patch("/v1/networks/public", json={"name": "x"}, headers=who).status_code == 403
        )
        assert client.delete("/v1/networks/public", headers=who).status_code == 403
        assert client.delete(f"/v1/subnets/{sub['id']}", headers=who).status_code == 403
        r = client.post(
            "/v1/subnets", json={"network": "public", "cidr": "10.0.0.0/24"}, headers=who
        )
        assert r.status_code == 403
    # The provider network is shared too.
    names = {n["name"] for n in client.get("/v1/networks", headers=w.bob).json["networks"]}
    assert names == {"provider", "public"}


# -- instances ----------------------------------------------------------------------------------


def _boot(client, w, who=None, **extra) -> Any:
    body = {"name": "vm", "flavor": w.flavor, "image": w.image, **extra}
    return client.post("/v1/instances", json=body, headers=who or w.alice)


def test_instances_take_networks_with_fixed_ips(client, world) -> None:
    w = world
    _range(client, w)
    app = _net(client, w.alice, "app")
    _subnet(client, w.alice, "app", "10.1.0.0/24")
    _net(client, w.alice, "db")
    _subnet(client, w.alice, "db", "10.2.0.0/24")
    r = _boot(
        client,
        w,
        networks=[{"network": "app", "fixed_ip": "10.1.0.50"}, "db", {"network": "provider"}],
    )
    assert r.status_code == 202, r.json
    vifs = r.json["networks"]
    assert [(v["index"], v["network_name"]) for v in vifs] == [
        (0, "app"),
        (1, "db"),
        (2, "provider"),
    ]
    assert vifs[0]["network_id"] == app["id"] and vifs[0]["fixed_ip"] == "10.1.0.50"
    assert vifs[0]["addresses"] == [
        {
            "address": "10.1.0.50",
            "subnet_id": vifs[0]["addresses"][0]["subnet_id"],
            "cidr": "10.1.0.0/24",
            "gateway_ip": "10.1.0.1",
            "ip_version": 4,
        }
    ]
    assert vifs[1]["addresses"] == [] and vifs[0]["port"] is None  # at claim time
    assert r.json["addresses"] == [{"network_id": app["id"], "address": "10.1.0.50"}]
    # The same fixed IP again: taken (409 naming the field).
    r = _boot(client, w, networks=[{"network": "app", "fixed_ip": "10.1.0.50"}])
    assert r.status_code == 409 and _fields(r) == ["networks.0.fixed_ip"]
    for fixed, why in (
        ("10.9.0.5", "in no subnet"),
        ("10.1.0.1", "gateway"),
        ("10.1.0.0", "network address"),
        ("10.1.0.255", "broadcast"),
        ("not-an-ip", "in no subnet"),
    ):
        r = _boot(client, w, networks=[{"network": "app", "fixed_ip": fixed}])
        assert r.status_code == 422 and _fields(r) == ["networks.0.fixed_ip"], r.json
        assert why in r.json["detail"]
    r = _boot(
        client,
        w,
        networks=[
            {"network": "app", "fixed_ip": "10.1.0.60"},
            {"network": "app", "fixed_ip": "10.1.0.60"},
        ],
    )
    assert r.status_code == 422 and _fields(r) == ["networks.1.fixed_ip"]
    r = _boot(client, w, networks=["app"] * 9)
    assert r.status_code == 422 and _fields(r) == ["networks"]
    r = _boot(client, w, networks=[{"network": "app", "extra": 1}])
    assert r.status_code == 422


def test_default_network_is_the_projects_only_one_else_the_provider(client, world) -> None:
    w = world
    r = _boot(client, w)
    assert [v["network_name"] for v in r.json["networks"]] == ["provider"]
    _range(client, w)
    _net(client, w.alice, "mine")
    r = _boot(client, w)
    assert r.status_code == 422 and _fields(r) == ["networks"]  # no IPv4 subnet yet
    _subnet(client, w.alice, "mine")
    r = _boot(client, w)
    assert [v["network_name"] for v in r.json["networks"]] == ["mine"]
    _net(client, w.alice, "other")
    r = _boot(client, w)
    assert r.status_code == 409 and _fields(r) == ["networks"]
    assert sorted(c["name"] for c in r.json["choices"]) == ["mine", "other"]


def test_a_network_in_use_cannot_be_deleted(client, world, jobs, ctx) -> None:
    w = world
    _range(client, w)
    net = _net(client, w.alice, "app")
    sub = _subnet(client, w.alice, "app")
    inst = _boot(client, w, networks=["app"]).json
    r = client.delete("/v1/networks/app", headers=w.alice)
    assert r.status_code == 409 and r.json["instances"] == [{"id": inst["id"], "name": "vm"}]
    assert inst["id"] in r.json["detail"]
    # No node: scheduling fails, the instance is ERROR and still holds the VIF.
    jobs()
    assert client.delete("/v1/networks/app", headers=w.alice).status_code == 409
    # A subnet with allocations is in use too.
    inst2 = _boot(client, w, networks=[{"network": "app", "fixed_ip": "10.1.0.9"}]).json
    r = client.delete(f"/v1/subnets/{sub['id']}", headers=w.alice)
    assert r.status_code == 409 and r.json["instances"] == [{"id": inst2["id"], "name": "vm"}]
    for i in (inst, inst2):
        assert client.delete(f"/v1/instances/{i['id']}", headers=w.alice).status_code == 202
    jobs()
    assert client.delete(f"/v1/subnets/{sub['id']}", headers=w.alice).status_code == 204
    assert client.delete(f"/v1/networks/{net['id']}", headers=w.alice).status_code == 204
    events = client.get("/v1/events?limit=1000", headers=w.alice).json["events"]
    kinds = {(e["type"], e["resource_id"]) for e in events}
    assert {
        ("network.created", net["id"]),
        ("subnet.created", sub["id"]),
        ("subnet.deleted", sub["id"]),
        ("network.deleted", net["id"]),
    } <= kinds
    bob_events = client.get("/v1/events?limit=1000", headers=w.bob).get_data(as_text=True)
    assert net["id"] not in bob_events


def test_claim_gives_every_vif_its_addresses(ctx, client, world, jobs) -> None:
    w = world
    make_available(ctx, 1, jobs)
    _range(client, w)
    _net(client, w.alice, "dual")
    v4 = _subnet(client, w.alice, "dual", "10.5.0.0/24")
    v6 = _subnet(client, w.alice, "dual", "2001:db8:5::/64")
    r = _boot(client, w, networks=[{"network": "dual", "fixed_ip": "10.5.0.77"}, "provider"])
    assert r.status_code == 202, r.json
    jobs()
    inst = client.get(f"/v1/instances/{r.json['id']}", headers=w.alice).json
    assert inst["status"] == "ACTIVE", inst
    dual, prov = inst["networks"]
    assert [(a["address"], a["subnet_id"]) for a in dual["addresses"]] == [
        ("10.5.0.77", v4["id"]),
        ("2001:db8:5::2", v6["id"]),
    ]
    assert [a["address"] for a in prov["addresses"]] == ["192.0.2.10"]
    assert len(inst["addresses"]) == 3
    with ctx.session() as s:
        from portal.core import vifs

        listed = vifs.for_instance(s, inst["id"])
        assert [v.network.name for v in listed] == ["dual", "provider"]
        assert [a.subnet.cidr for a in listed[0].addresses] == ["10.5.0.0/24", "2001:db8:5::/64"]
        assert vifs.physical_networks(s, inst["id"]) == ["physnet1", "physnet1"]
        port_id = s.scalars(
            __import__("sqlalchemy").select(__import__("portal.core.models").core.models.Port.id)
        ).first()
        vifs.bind_port(s, listed[0].id, port_id)
    shown = client.get(f"/v1/instances/{inst['id']}", headers=w.alice).json["networks"][0]
    assert shown["port"]["id"] == port_id and shown["port"]["address"].startswith("52:54:00")
    r = client.delete(f"/v1/instances/{inst['id']}", headers=w.alice)
    jobs()
    assert client.delete("/v1/networks/dual", headers=w.alice).status_code == 204
