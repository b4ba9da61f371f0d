"""/v1/switches (admin): onboarding, validation, credentials sealed and redacted, deletion
while wired; switch port desired-state bookkeeping."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text, update

from portal.core.models import Event, Port, Switch, SwitchPort
from portal.core.secrets import PREFIX, REDACTED
from tests.helpers import node_body, seed_world

PROBLEM = "application/problem+json"


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


@pytest.fixture
def admin(world):
    return world.admin


def switch_body(name: str = "tor1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "driver": "netmiko",
        "address": "192.0.2.10",
        "port": 22,
        "device_type": "cisco_ios",
        "username": "netops",
        "credentials": {"password": "sw-pass-1", "enable_secret": "en-1"},
        "settings": {
            "provisioning_vlan": 10,
            "quarantine_vlan": 4000,
            "allowed_vlans": "100-999,1000",
            "allowed_ports": ["Ethernet1/*"],
            "protected_ports": ["Ethernet1/48"],
            "save_config": True,
            "chassis_id": "AA-BB-CC-00-00-01",
        },
        "description": "rack 12 top of rack",
    }
    body.update(over)
    return body


def errors_of(r: Any) -> list[str]:
    assert r.mimetype == PROBLEM, r.data
    return [e["field"] for e in r.json.get("errors", [])]


def test_create_show_list_patch_delete(client, ctx, admin) -> None:
    r = client.post("/v1/switches", json=switch_body(), headers=admin)
    assert r.status_code == 201, r.json
    sw = r.json
    assert r.headers["Location"].endswith(f"/v1/switches/{sw['id']}")
    assert sw["credentials"] == {"password": REDACTED, "enable_secret": REDACTED}
    assert sw["settings"]["reconcile"] == "fix"  # the default
    assert sw["settings"]["chassis_id"] == "aa:bb:cc:00:00:01"  # normalized
    assert client.get("/v1/switches/tor1", headers=admin).json == sw
    assert client.get(f"/v1/switches/{sw['id']}", headers=admin).json["name"] == "tor1"
    client.post("/v1/switches", json=switch_body("ovs1", driver="ovs", address=None), headers=admin)
    listed = client.get("/v1/switches?sort_key=name", headers=admin).json["switches"]
    assert [s["name"] for s in listed] == ["ovs1", "tor1"]
    only = client.get("/v1/switches?driver=ovs", headers=admin).json["switches"]
    assert [s["name"] for s in only] == ["ovs1"]

    # Merge patch: settings key by key (null removes), credentials ****** kept.
    r = client.patch(
        "/v1/switches/tor1",
        json={
            "description": "moved",
            "maintenance": True,
            "maintenance_reason": "firmware",
            "settings": {"reconcile": "report", "quarantine_vlan": None, "bridge": "br-int"},
            "credentials": {"password": REDACTED, "enable_secret": None, "private_key": "KEY-1"},
        },
        headers=admin,
    )
    assert r.status_code == 200, r.json
    got = r.json
    assert got["description"] == "moved" and got["maintenance"] is True
    assert got["maintenance_reason"] == "firmware"
    assert got["settings"]["reconcile"] == "report" and "quarantine_vlan" not in got["settings"]
    assert got["settings"]["bridge"] == "br-int" and got["settings"]["provisioning_vlan"] == 10
    assert got["credentials"] == {"password": REDACTED, "private_key": REDACTED}
    with ctx.session() as s:
        stored = s.scalars(select(Switch).where(Switch.name == "tor1")).one()
        assert ctx.cipher.decrypt(stored.credentials["password"]) == "sw-pass-1"
        assert ctx.cipher.decrypt(stored.credentials["private_key"]) == "KEY-1"
    r = client.patch("/v1/switches/tor1", json={"maintenance": False}, headers=admin)
    assert r.json["maintenance_reason"] is None

    assert client.delete("/v1/switches/tor1", headers=admin).status_code == 204
    assert client.get("/v1/switches/tor1", headers=admin).status_code == 404
    with ctx.session() as s:
        kinds = s.scalars(select(Event.type).where(Event.resource_type == "switch")).all()
    assert sorted(kinds) == [
        "switch.created",
        "switch.created",
        "switch.deleted",
        "switch.updated",
        "switch.updated",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"settings": {}}, "settings.provisioning_vlan"),
        ({"settings": {"provisioning_vlan": 0}}, "settings.provisioning_vlan"),
        (
            {"settings": {"provisioning_vlan": 10, "allowed_vlans": "100-5000"}},
            "settings.allowed_vlans",
        ),
        (
            {"settings": {"provisioning_vlan": 10, "allowed_vlans": "200-100"}},
            "settings.allowed_vlans",
        ),
        ({"settings": {"provisioning_vlan": 10, "allowed_vlans": "a-b"}}, "settings.allowed_vlans"),
        ({"settings": {"provisioning_vlan": 10, "reconcile": "maybe"}}, "settings.reconcile"),
        (
            {"settings": {"provisioning_vlan": 10, "protected_ports": "Eth1"}},
            "settings.protected_ports",
        ),
        ({"settings": {"provisioning_vlan": 10, "ovsdb_password": "x"}}, "settings.ovsdb_password"),
        ({"settings": {"provisioning_vlan": 10, "chassis_id": "nope"}}, "settings.chassis_id"),
        ({"settings": {"provisioning_vlan": 10, "timeout": 0}}, "settings.timeout"),
        ({"driver": "cisco"}, "driver"),
        ({"address": None}, "address"),
        ({"device_type": None}, "device_type"),
        ({"credentials": {}}, "credentials"),
        ({"credentials": {"password": REDACTED}}, "credentials.password"),
        ({"credentials": {"token": "x"}}, "credentials.token"),
        ({"name": "0e6b1f4c-8d4f-4f0e-9d5c-7a1b2c3d4e5f"}, "name"),
        ({"name": "bad name"}, "name"),
        ({"port": 70000}, "port"),
    ],
)
def test_invalid_switches_are_422_naming_the_field(client, admin, change, field) -> None:
    r = client.post("/v1/switches", json=switch_body(**change), headers=admin)
    assert r.status_code == 422, r.json
    assert field in errors_of(r), r.json
    assert "sw-pass-1" not in r.get_data(as_text=True)


def test_patch_validates_the_merged_settings_and_duplicate_names(client, admin) -> None:
    client.post("/v1/switches", json=switch_body(), headers=admin)
    client.post("/v1/switches", json=switch_body("tor2"), headers=admin)
    r = client.patch(
        "/v1/switches/tor1", json={"settings": {"provisioning_vlan": None}}, headers=admin
    )
    assert r.status_code == 422 and errors_of(r) == ["settings.provisioning_vlan"]
    r = client.patch("/v1/switches/tor1", json={"name": "tor2"}, headers=admin)
    assert r.status_code == 409 and errors_of(r) == ["name"]
    r = client.post("/v1/switches", json=switch_body("tor2"), headers=admin)
    assert r.status_code == 409 and errors_of(r) == ["name"]
    r = client.patch("/v1/switches/tor1", json={"credentials": {"password": None}}, headers=admin)
    assert r.status_code == 422 and errors_of(r) == ["credentials"]  # netmiko needs one
    assert client.patch("/v1/switches/nope", json={}, headers=admin).status_code == 404


def test_credentials_are_sealed_in_the_database(client, ctx, admin) -> None:
    client.post("/v1/switches", json=switch_body(), headers=admin)
    with ctx.db.engine.connect() as conn:
        raw = conn.execute(text("SELECT credentials FROM switches")).scalar_one()
    raw_text = raw if isinstance(raw, str) else str(raw)
    assert "sw-pass-1" not in raw_text and "en-1" not in raw_text
    assert raw_text.count(PREFIX) == 2


# -- wiring node ports ------------------------------------------------------------------


def wired(mac: str, switch: str, port: str, **more: Any) -> dict[str, Any]:
    return {"address": mac, "local_link_connection": {"switch_id": switch, "port_id": port, **more}}


def test_ports_name_switches_by_id_name_chassis_mac_or_switch_info(client, admin) -> None:
    sw = client.post("/v1/switches", json=switch_body(), headers=admin).json
    node = client.post("/v1/nodes", json=node_body(1, ports=[]), headers=admin).json
    links = [
        {"switch_id": sw["id"], "port_id": "Ethernet1/1"},
        {"switch_id": "tor1", "port_id": "Ethernet1/2", "switch_info": "tor1.rack12"},
        {"switch_id": "aa:bb:cc:00:00:01", "port_id": "Ethernet1/3"},  # LLDP chassis id
        {"switch_info": "tor1", "port_id": "Ethernet1/4"},
    ]
    for i, link in enumerate(links):
        r = client.post(
            "/v1/ports",
            json={
                "node": node["uuid"],
                "address": f"52:54:00:00:01:0{i}",
                "physical_network": "physnet1",
                "local_link_connection": link,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.json
        assert r.json["switch_uuid"] == sw["id"]
        assert r.json["local_link_connection"] == link
        assert r.json["physical_network"] == "physnet1"
    shown = client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json["ports"]
    assert [p["local_link_connection"]["port_id"] for p in shown] == [
        "Ethernet1/1",
        "Ethernet1/2",
        "Ethernet1/3",
        "Ethernet1/4",
    ]
    listed = client.get("/v1/nodes", headers=admin).json["nodes"][0]["ports"]
    assert listed == shown  # the fast list serializer agrees with the schema
    ports = client.get(f"/v1/ports?node={node['uuid']}", headers=admin).json["ports"]
    assert {p["switch_uuid"] for p in ports} == {sw["id"]}


@pytest.mark.parametrize(
    ("link", "field", "status"),
    [
        ({"switch_id": "nope", "port_id": "Ethernet1/1"}, "local_link_connection.switch_id", 422),
        (
            {"switch_info": "nope", "port_id": "Ethernet1/1"},
            "local_link_connection.switch_info",
            422,
        ),
        ({"switch_id": "tor1"}, "local_link_connection.port_id", 422),
        ({"port_id": "Ethernet1/1"}, "local_link_connection.switch_id", 422),
        ({"switch_id": "tor1", "port_id": "Ethernet1/48"}, "local_link_connection.port_id", 422),
        ({"switch_id": "tor1", "port_id": "Gi0/1"}, "local_link_connection.port_id", 422),
        (
            {"switch_id": "tor1", "port_id": "Ethernet1/1", "vlan": 3},
            "local_link_connection.vlan",
            422,
        ),
        ({"switch_id": "tor1", "port_id": "Ethernet1/9"}, "local_link_connection.port_id", 409),
    ],
)
def test_bad_links_are_refused_naming_the_field(client, admin, link, field, status) -> None:
    client.post("/v1/switches", json=switch_body(), headers=admin)
    client.post(
        "/v1/nodes",
        json=node_body(1, ports=[wired("52:54:00:00:02:01", "tor1", "Ethernet1/9")]),
        headers=admin,
    )
    node = client.post("/v1/nodes", json=node_body(2, ports=[]), headers=admin).json
    body = {"node": node["uuid"], "address": "52:54:00:00:02:02", "local_link_connection": link}
    r = client.post("/v1/ports", json=body, headers=admin)
    assert r.status_code == status, r.json
    assert field in errors_of(r), r.json
    if status == 409:  # names the other node's port
        other = client.get("/v1/nodes/node-1", headers=admin).json["ports"][0]["uuid"]
        assert other in r.json["detail"] and "node-1" in r.json["detail"]
        assert r.json["port"] == other
    # The same through POST /v1/nodes, under ports.0.
    r = client.post(
        "/v1/nodes",
        json=node_body(3, ports=[{"address": "52:54:00:00:02:03", "local_link_connection": link}]),
        headers=admin,
    )
    assert r.status_code == status and f"ports.0.{field}" in errors_of(r), r.json
    assert client.get("/v1/nodes/node-3", headers=admin).status_code == 404


def test_one_switch_port_is_not_named_twice_in_one_node(client, admin) -> None:
    client.post("/v1/switches", json=switch_body(), headers=admin)
    ports = [
        wired("52:54:00:00:03:01", "tor1", "Ethernet1/5"),
        wired("52:54:00:00:03:02", "tor1", "Ethernet1/5"),
    ]
    r = client.post("/v1/nodes", json=node_body(1, ports=ports), headers=admin)
    assert r.status_code == 422 and errors_of(r) == ["ports.1.local_link_connection.port_id"]


def test_the_database_keeps_one_node_port_per_switch_port(ctx, client, admin) -> None:
    """The unique key holds even past the service's check (a race)."""
    from sqlalchemy.exc import IntegrityError

    sw = client.post("/v1/switches", json=switch_body(), headers=admin).json
    a = client.post("/v1/nodes", json=node_body(1), headers=admin).json["ports"][0]["uuid"]
    b = client.post("/v1/nodes", json=node_body(2), headers=admin).json["ports"][0]["uuid"]
    with pytest.raises(IntegrityError), ctx.session() as s:
        for pid in (a, b):
            s.execute(
                update(Port)
                .where(Port.id == pid)
                .values(switch_id=sw["id"], switch_port_name="Ethernet1/1")
            )


def test_patch_a_port_rewires_and_unwires_it(client, ctx, admin) -> None:
    client.post("/v1/switches", json=switch_body(), headers=admin)
    node = client.post("/v1/nodes", json=node_body(1), headers=admin).json
    port = node["ports"][0]["uuid"]
    link = {"switch_id": "tor1", "port_id": "Ethernet1/7"}
    r = client.patch(
        f"/v1/ports/{port}",
        json={"local_link_connection": link, "physical_network": "physnet1"},
        headers=admin,
    )
    assert r.status_code == 200, r.json
    assert r.json["local_link_connection"] == link and r.json["physical_network"] == "physnet1"
    # Patching the same link again is no clash with itself.
    assert (
        client.patch(
            f"/v1/ports/{port}", json={"local_link_connection": link}, headers=admin
        ).status_code
        == 200
    )
    # The switch cannot go while the port is wired to it: 409 naming the port.
    r = client.delete("/v1/switches/tor1", headers=admin)
    assert r.status_code == 409 and r.json["ports"] == [port]
    assert "node-1" in r.json["detail"] and "Ethernet1/7" in r.json["detail"]
    # Not while the node is deployed.
    with ctx.session() as s:
        s.execute(text("UPDATE nodes SET provision_state = 'active'"))
    r = client.patch(f"/v1/ports/{port}", json={"local_link_connection": None}, headers=admin)
    assert r.status_code == 409 and r.json["state"] == "active"
    with ctx.session() as s:
        s.execute(text("UPDATE nodes SET provision_state = 'manageable'"))
    r = client.patch(f"/v1/ports/{port}", json={"local_link_connection": {}}, headers=admin)
    assert r.status_code == 200 and r.json["local_link_connection"] == {}
    assert r.json["switch_uuid"] is None
    r = client.patch(f"/v1/ports/{port}", json={"pxe_enabled": 1}, headers=admin)
    assert r.status_code == 422
    assert client.delete("/v1/switches/tor1", headers=admin).status_code == 204
    assert client.patch("/v1/ports/nope", json={}, headers=admin).status_code == 404


def test_import_json_and_csv_wire_ports(client, admin) -> None:
    client.post("/v1/switches", json=switch_body(), headers=admin)
    rows = [
        node_body(1, ports=[wired("52:54:00:00:04:01", "tor1", "Ethernet1/1")]),
        node_body(2, ports=[wired("52:54:00:00:04:02", "nope", "Ethernet1/2")]),
    ]
    r = client.post("/v1/nodes/import", json=rows, headers=admin)
    assert r.status_code == 200 and r.json["created"] == 1, r.json
    bad = r.json["results"][1]
    assert bad["errors"][0]["field"] == "ports.0.local_link_connection.switch_id"
    csv_text = (
        "name,driver,resource_class,ports\n"
        "c1,fake,baremetal,52:54:00:00:05:01@physnet1@tor1/Ethernet1/3;52:54:00:00:05:02\n"
        "c2,fake,baremetal,52:54:00:00:05:03@@aa:bb:cc:00:00:01/Ethernet1/4\n"
        "c3,fake,baremetal,52:54:00:00:05:04@physnet1@tor1/Ethernet1/3\n"
        "c4,fake,baremetal,52:54:00:00:05:05@physnet1@tor1\n"
    )
    r = client.post(
        "/v1/nodes/import",
        data=csv_text,
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert r.status_code == 200 and r.json["created"] == 2, r.json
    c3, c4 = r.json["results"][2:]
    assert c3["errors"][0]["field"] == "ports.0.local_link_connection.port_id"  # taken (409)
    assert "c1" in c3["errors"][0]["message"] or "wired" in c3["errors"][0]["message"]
    assert c4["errors"][0]["field"] == "ports.0.local_link_connection.port_id"  # missing
    c1 = client.get("/v1/nodes/c1", headers=admin).json["ports"]
    assert c1[0]["local_link_connection"] == {"switch_id": "tor1", "port_id": "Ethernet1/3"}
    assert c1[0]["physical_network"] == "physnet1" and c1[1]["local_link_connection"] == {}
    c2 = client.get("/v1/nodes/c2", headers=admin).json["ports"][0]
    assert c2["physical_network"] is None and c2["switch_uuid"] is not None


# -- isolation ---------------------------------------------------------------------------


def test_tenants_cannot_see_or_change_switches(client, ctx, world) -> None:
    admin = world.admin
    sw = client.post("/v1/switches", json=switch_body(), headers=admin).json
    for who in (world.alice, world.reader, world.bob):
        assert client.get("/v1/switches", headers=who).status_code == 403
        for url in (f"/v1/switches/{sw['id']}", "/v1/switches/tor1/ports"):
            assert client.get(url, headers=who).status_code == 403
        r = client.patch(f"/v1/switches/{sw['id']}", json={"name": "mine"}, headers=who)
        assert r.status_code == 403
        assert client.delete(f"/v1/switches/{sw['id']}", headers=who).status_code == 403
        assert client.post("/v1/switches", json=switch_body("x"), headers=who).status_code == 403
        events = client.get("/v1/events?limit=1000", headers=who).get_data(as_text=True)
        assert sw["id"] not in events
    assert client.get("/v1/switches/tor1", headers=admin).json["name"] == "tor1"


# -- desired state of switch ports -------------------------------------------------------


def test_switch_port_generations(ctx, client, admin) -> None:
    from portal.core import switchports as sp

    sw = client.post("/v1/switches", json=switch_body(), headers=admin).json
    node = client.post(
        "/v1/nodes",
        json=node_body(1, ports=[wired("52:54:00:00:06:01", "tor1", "Ethernet1/1")]),
        headers=admin,
    ).json
    node_port = node["ports"][0]["uuid"]
    prov = {"mode": "access", "vlan": 10}
    with ctx.session() as s:
        p1 = sp.set_desired(s, sw["id"], "Ethernet1/1", prov, "provisioning", node_port)
        assert (p1.desired_generation, p1.applied_generation) == (1, 0)
        assert p1.desired == {"mode": "access", "vlan": 10, "trunk_vlans": [], "enabled": True}
        again = sp.set_desired(s, sw["id"], "Ethernet1/1", dict(prov), "provisioning", node_port)
        assert again.id == p1.id and again.desired_generation == 1  # no change, no bump
        sp.set_desired(
            s, sw["id"], "Ethernet1/2", {"mode": "access", "enabled": False}, "quarantine"
        )
        assert [p.name for p in sp.pending(s, sw["id"])] == ["Ethernet1/1", "Ethernet1/2"]
        ids = {p1.id: 1}
    with ctx.session() as s:
        assert sp.mark_applied(s, ids) == 1
        assert sp.mark_applied(s, ids) == 0  # already recorded
        assert [p.name for p in sp.pending(s, sw["id"])] == ["Ethernet1/2"]
        trunk = {"mode": "trunk", "vlan": 10, "trunk_vlans": [200, 100, 200]}
        p1 = sp.set_desired(s, sw["id"], "Ethernet1/1", trunk, "tenant", node_port, "inst-1")
        assert p1.desired_generation == 2 and p1.desired["trunk_vlans"] == [100, 200]
        sp.mark_applied(s, [(p1.id, 1)])  # an older generation: still pending
        assert "Ethernet1/1" in [p.name for p in sp.pending(s, sw["id"])]
        sp.mark_failed(s, [p1.id], "switch said: % Invalid input")
        sp.record_observed(
            s, sw["id"], {"Ethernet1/1": {"mode": "access", "vlan": 10}, "Ethernet1/2": None}
        )
        for bad in ({"mode": "hybrid"}, {"mode": "access"}, {"mode": "access", "vlan": 5000}):
            with pytest.raises(ValueError):
                sp.set_desired(s, sw["id"], "Ethernet1/3", bad, "tenant")
        with pytest.raises(ValueError):
            sp.set_desired(s, sw["id"], "Ethernet1/3", prov, "other")
    ports = {
        p["name"]: p for p in client.get("/v1/switches/tor1/ports", headers=admin).json["ports"]
    }
    e1, e2 = ports["Ethernet1/1"], ports["Ethernet1/2"]
    assert e1["state"] == "pending" and e1["drift"] is True and e1["purpose"] == "tenant"
    assert e1["last_error"] == "switch said: % Invalid input" and e1["instance_uuid"] == "inst-1"
    assert e1["node_port_uuid"] == node_port and e1["node_uuid"] == node["uuid"]
    assert e1["node_port_address"] == "52:54:00:00:06:01"
    assert e2["drift"] is True and e2["observed"] is None  # read as absent
    with ctx.session() as s:
        sp.mark_applied(s, {e1["id"]: 2})
        sp.record_observed(
            s, sw["id"], {"Ethernet1/1": {"mode": "trunk", "vlan": 10, "trunk_vlans": [200, 100]}}
        )
    e1 = client.get("/v1/switches/tor1/ports", headers=admin).json["ports"][0]
    assert e1["state"] == "applied" and e1["drift"] is False and e1["last_error"] is None
    # A node port deleted: the switch port's row stays, unlinked (SET NULL).
    assert client.delete(f"/v1/ports/{node_port}", headers=admin).status_code == 204
    with ctx.session() as s:
        assert (
            s.scalars(select(SwitchPort.node_port_id).where(SwitchPort.name == "Ethernet1/1")).one()
            is None
        )
    # Deleting the switch takes its switch port rows along.
    assert client.delete("/v1/switches/tor1", headers=admin).status_code == 204
    with ctx.session() as s:
        assert s.scalars(select(SwitchPort)).all() == []


def test_switch_port_names_are_unique_per_switch(ctx, client, admin) -> None:
    from sqlalchemy.exc import IntegrityError

    sw = client.post("/v1/switches", json=switch_body(), headers=admin).json
    other = client.post("/v1/switches", json=switch_body("tor2"), headers=admin).json
    with ctx.session() as s:
        for switch_id in (sw["id"], other["id"]):  # one name on two switches is fine
            s.add(SwitchPort(switch_id=switch_id, name="Ethernet1/1", purpose="tenant", desired={}))
    with pytest.raises(IntegrityError), ctx.session() as s:
        s.add(SwitchPort(switch_id=sw["id"], name="Ethernet1/1", purpose="tenant", desired={}))
        s.flush()
