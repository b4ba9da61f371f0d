"""/v1/nodes for admins: enrollment, secrets, JSON Patch, bulk import, listing, maintenance."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from portal.core.models import Event, Node, Port
from portal.core.secrets import PREFIX
from tests.helpers import node_body, seed_world

PASSWORD = "s3cret-pw"


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


@pytest.fixture
def admin(world) -> dict[str, str]:
    return world.admin


def create(client, admin, i: int, **over: Any) -> dict[str, Any]:
    r = client.post("/v1/nodes", json=node_body(i, **over), headers=admin)
    assert r.status_code == 201, r.json
    return r.json


def counts(ctx) -> tuple[int, int]:
    with ctx.session() as s:
        return s.scalar(select(func.count()).select_from(Node)), s.scalar(
            select(func.count()).select_from(Port)
        )


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


# -- create and show ----------------------------------------------------------------------


def test_create_with_ports_then_show_by_name_and_uuid(client, admin) -> None:
    body = node_body(
        7,
        ports=[
            {"address": "52:54:00:AA:BB:01", "physical_network": "physnet1"},
            {"address": "52-54-00-aa-bb-02", "pxe_enabled": False},
        ],
        capabilities={"boot_mode": "uefi"},
        traits=["CUSTOM_RAID"],
    )
    r = client.post("/v1/nodes", json=body, headers=admin)
    assert r.status_code == 201, r.json
    node = r.json
    assert r.headers["Location"] == f"/v1/nodes/{node['uuid']}"
    assert node["name"] == "node-7" and node["driver"] == "fake"
    assert node["provision_state"] == "enroll" and node["target_provision_state"] is None
    assert node["allowed_actions"] == ["manage"]
    assert node["capabilities"] == {"boot_mode": "uefi"} and node["traits"] == ["CUSTOM_RAID"]
    # MACs are normalised to lower case with colons; ports are ordered by address.
    assert [(p["address"], p["physical_network"], p["pxe_enabled"]) for p in node["ports"]] == [
        ("52:54:00:aa:bb:01", "physnet1", True),
        ("52:54:00:aa:bb:02", None, False),
    ]
    assert {p["node_uuid"] for p in node["ports"]} == {node["uuid"]}
    by_name = client.get("/v1/nodes/node-7", headers=admin).json
    by_uuid = client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json
    assert by_name == by_uuid
    assert by_name["uuid"] == node["uuid"]
    ports = client.get("/v1/ports?node=node-7", headers=admin).json["ports"]
    assert sorted(p["address"] for p in ports) == ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"]


def test_password_is_encrypted_at_rest_and_redacted_everywhere(ctx, client, admin) -> None:
    node = create(client, admin, 1)
    assert node["driver_info"] == {
        "bmc_address": "10.0.0.1",
        "bmc_username": "admin",
        "bmc_password": "******",
    }
    with ctx.db.engine.connect() as conn:
        raw = conn.execute(
            text("SELECT driver_info FROM nodes WHERE id = :id"), {"id": node["uuid"]}
        ).scalar_one()
    stored = json.loads(raw) if isinstance(raw, str) else raw
    assert stored["bmc_password"].startswith(PREFIX)
    assert PASSWORD not in json.dumps(stored)
    assert stored["bmc_address"] == "10.0.0.1"
    assert ctx.cipher.decrypt(stored["bmc_password"]) == PASSWORD
    # Nowhere in the API: node views, the list, or the events outbox.
    r = client.patch(
        f"/v1/nodes/{node['uuid']}",
        json=[{"op": "add", "path": "/driver_info/bmc_port", "value": "623"}],
        headers=admin,
    )
    assert r.status_code == 200 and r.json["driver_info"]["bmc_password"] == "******"
    for path in ("/v1/nodes", f"/v1/nodes/{node['uuid']}", "/v1/events?limit=1000"):
        r = client.get(path, headers=admin)
        assert r.status_code == 200 and PASSWORD not in r.get_data(as_text=True), path
    with ctx.session() as s:
        events = s.scalars(select(Event).where(Event.resource_id == node["uuid"])).all()
        assert {e.type for e in events} == {"node.created", "node.updated"}
        assert PASSWORD not in json.dumps([e.payload for e in events])


def test_validate_reports_per_interface(client, admin) -> None:
    ok = create(client, admin, 1)
    r = client.get(f"/v1/nodes/{ok['uuid']}/validate", headers=admin)
    assert r.status_code == 200
    ready = ("power", "management", "network", "inspect")
    assert {i: r.json[i] for i in ready} == {i: {"result": True, "reason": None} for i in ready}
    # As `ironic node-validate` on an idle node: deploy names the image fields it lacks.
    assert r.json["deploy"]["result"] is False
    assert "image_url, image_sha256, image_disk_format" in r.json["deploy"]["reason"]
    bad = create(
        client,
        admin,
        2,
        driver_info={"bmc_address": "10.0.0.2", "bmc_password": "x", "fake_fail": "validate"},
    )
    out = client.get("/v1/nodes/node-2/validate", headers=admin).json
    # The BMC driver's interfaces fail; the switch wiring ("network") is not the BMC's.
    assert {i: v["result"] for i, v in out.items()} == {
        **dict.fromkeys(("power", "management", "deploy", "inspect"), False),
        "network": True,
    }
    assert "validate" in out["power"]["reason"]
    assert client.get(f"/v1/nodes/{bad['uuid']}/validate", headers=admin).json == out


def test_duplicate_mac_is_409_and_creates_nothing(ctx, client, admin) -> None:
    create(client, admin, 1)
    before = counts(ctx)
    dup = node_body(2, ports=[{"address": "52:54:00:12:00:02"}, {"address": "52-54-00-12-00-01"}])
    r = client.post("/v1/nodes", json=dup, headers=admin)
    assert r.status_code == 409 and r.mimetype == "application/problem+json"
    assert "52:54:00:12:00:01" in r.json["detail"] and r.json["field"] == "address"
    assert counts(ctx) == before
    assert client.get("/v1/nodes/node-2", headers=admin).status_code == 404


def test_duplicate_name_is_409(client, admin) -> None:
    create(client, admin, 1)
    r = client.post("/v1/nodes", json=node_body(2, name="node-1"), headers=admin)
    assert r.status_code == 409 and "node-1" in r.json["detail"]


def test_delete_node_and_its_ports(ctx, client, admin) -> None:
    node = create(client, admin, 1)
    assert client.delete(f"/v1/nodes/{node['uuid']}", headers=admin).status_code == 204
    assert client.get(f"/v1/nodes/{node['uuid']}", headers=admin).status_code == 404
    assert counts(ctx) == (0, 0)


# -- JSON Patch -----------------------------------------------------------------------------


def test_patch_add_replace_remove(client, admin) -> None:
    node = create(client, admin, 1, capabilities={"raid": "1"})
    url = f"/v1/nodes/{node['uuid']}"
    r = client.patch(
        url,
        json=[
            {"op": "replace", "path": "/properties/cpus", "value": 32},
            {"op": "remove", "path": "/properties/local_gb"},
            {"op": "add", "path": "/capabilities/boot_mode", "value": "uefi"},
            {"op": "remove", "path": "/capabilities/raid"},
            {"op": "add", "path": "/traits/-", "value": "CUSTOM_GPU"},
            {"op": "replace", "path": "/name", "value": "rack1-u07"},
        ],
        headers=admin,
    )
    assert r.status_code == 200, r.json
    assert r.json["properties"] == {"cpus": 32, "memory_mb": 16384, "cpu_arch": "x86_64"}
    assert r.json["capabilities"] == {"boot_mode": "uefi"}
    assert r.json["traits"] == ["CUSTOM_GPU"]
    assert r.json["name"] == "rack1-u07"
    assert client.get("/v1/nodes/rack1-u07", headers=admin).json["uuid"] == node["uuid"]
    assert client.get("/v1/nodes/node-1", headers=admin).status_code == 404


def test_patch_remove_name_clears_it(client, admin) -> None:
    node = create(client, admin, 1)
    url = f"/v1/nodes/{node['uuid']}"
    r = client.patch(url, json=[{"op": "remove", "path": "/name"}], headers=admin)
    assert r.status_code == 200, r.json
    assert r.json["name"] is None
    assert client.get(url, headers=admin).json["name"] is None
    assert client.get("/v1/nodes/node-1", headers=admin).status_code == 404


def test_patch_remove_of_a_required_field_is_422(client, admin) -> None:
    node = create(client, admin, 1)
    r = client.patch(
        f"/v1/nodes/{node['uuid']}", json=[{"op": "remove", "path": "/driver"}], headers=admin
    )
    assert r.status_code == 422, r.json
    assert [e["field"] for e in r.json["errors"]] == ["driver"]
    assert client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json["driver"] == "fake"


def test_patch_driver_info_keeps_the_redacted_password(ctx, client, admin) -> None:
    node = create(client, admin, 1)
    url = f"/v1/nodes/{node['uuid']}"
    r = client.patch(
        url,
        json=[
            {"op": "replace", "path": "/driver_info/bmc_address", "value": "10.9.9.9"},
            {"op": "replace", "path": "/driver_info/bmc_password", "value": "******"},
        ],
        headers=admin,
    )
    assert r.status_code == 200, r.json
    assert r.json["driver_info"]["bmc_password"] == "******"
    with ctx.session() as s:
        info = s.get_one(Node, node["uuid"]).driver_info
    assert info["bmc_address"] == "10.9.9.9"
    assert ctx.cipher.decrypt(info["bmc_password"]) == PASSWORD

    r = client.patch(
        url,
        json=[{"op": "replace", "path": "/driver_info/bmc_password", "value": "n3w-pw"}],
        headers=admin,
    )
    assert r.status_code == 200 and r.json["driver_info"]["bmc_password"] == "******"
    with ctx.session() as s:
        stored = s.get_one(Node, node["uuid"]).driver_info["bmc_password"]
    assert stored.startswith(PREFIX) and ctx.cipher.decrypt(stored) == "n3w-pw"


BAD_PATCHES = [
    # A path outside the patchable fields is refused by the schema (its pattern): "0.path".
    ([{"op": "replace", "path": "/provision_state", "value": "active"}], "0.path"),
    ([{"op": "replace", "path": "/uuid", "value": "x"}], "0.path"),
    ([{"op": "replace", "path": "/properties/cpus", "value": "many"}], "properties"),
    ([{"op": "add", "path": "/traits/-", "value": "lower"}], "traits"),
    ([{"op": "remove", "path": "/capabilities/nope"}], "patch"),
    (
        [
            {"op": "replace", "path": "/properties/cpus", "value": 64},
            {"op": "replace", "path": "/instance_uuid", "value": "x"},
        ],
        "1.path",
    ),
]


def test_invalid_patches_are_422_and_change_nothing(client, admin) -> None:
    node = create(client, admin, 1)
    for ops, field in BAD_PATCHES:
        r = client.patch(f"/v1/nodes/{node['uuid']}", json=ops, headers=admin)
        assert r.status_code == 422, (ops, r.json)
        assert any(e["field"].startswith(field) for e in r.json["errors"]), (ops, r.json)
    after = client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json
    assert after == node


def test_patch_with_a_bad_op_is_422(client, admin) -> None:
    create(client, admin, 1)
    r = client.patch(
        "/v1/nodes/node-1", json=[{"op": "move", "path": "/name", "from": "/x"}], headers=admin
    )
    assert r.status_code == 422


# -- bulk import ------------------------------------------------------------------------------


def test_import_json_reports_the_bad_row_and_keeps_the_good_ones(ctx, client, admin) -> None:
    rows = [
        node_body(1),
        # Row 2: its second port takes row 1's MAC; the node itself is valid.
        node_body(2, ports=[{"address": "52:54:00:12:00:02"}, {"address": "52:54:00:12:00:01"}]),
        node_body(3),
        node_body(4, ports=[{"address": "garbage"}]),
    ]
    r = client.post("/v1/nodes/import", json={"nodes": rows}, headers=admin)
    assert r.status_code == 200, r.json
    assert (r.json["created"], r.json["failed"]) == (2, 2)
    results = {row["row"]: row for row in r.json["results"]}
    assert [results[i]["status"] for i in (1, 2, 3, 4)] == ["created", "error", "created", "error"]
    assert results[2]["name"] == "node-2" and results[2]["uuid"] is None
    assert "52:54:00:12:00:01" in results[2]["errors"][0]["message"]
    assert [e["field"] for e in results[4]["errors"]] == ["ports.0.address"]
    # The bad rows left nothing behind: no node and none of their ports.
    with ctx.session() as s:
        names = set(s.scalars(select(Node.name)))
        macs = set(s.scalars(select(Port.address)))
    assert names == {"node-1", "node-3"}
    assert macs == {"52:54:00:12:00:01", "52:54:00:12:00:03"}
    assert "52:54:00:12:00:02" not in macs
    created = {results[i]["uuid"] for i in (1, 3)}
    assert created == {
        client.get(f"/v1/nodes/node-{i}", headers=admin).json["uuid"] for i in (1, 3)
    }


CSV = """name,driver,resource_class,driver_info.bmc_address,driver_info.bmc_password,properties.cpus,properties.memory_mb,properties.local_gb,capabilities,traits,ports
csv-1,fake,baremetal,10.1.0.1,pw-one,16,65536,200,boot_mode:uefi;raid:1,CUSTOM_A;CUSTOM_B,52:54:00:00:01:01@physnet1;52:54:00:00:01:02
csv-2,fake,baremetal,10.1.0.2,pw-two,lots,65536,200,,,52:54:00:00:02:01
csv-3,fake,baremetal,10.1.0.3,pw-three,8,32768,100,,,52:54:00:00:03:01
"""


def test_import_csv(ctx, client, admin) -> None:
    r = client.post("/v1/nodes/import", data=CSV.encode(), content_type="text/csv", headers=admin)
    assert r.status_code == 200, r.json
    assert (r.json["created"], r.json["failed"]) == (2, 1)
    bad = [row for row in r.json["results"] if row["status"] == "error"]
    assert len(bad) == 1 and bad[0]["row"] == 2 and bad[0]["name"] == "csv-2"
    assert bad[0]["errors"][0]["field"] == "properties.cpus"
    one = client.get("/v1/nodes/csv-1", headers=admin).json
    assert one["properties"] == {"cpus": 16, "memory_mb": 65536, "local_gb": 200}
    assert one["capabilities"] == {"boot_mode": "uefi", "raid": "1"}
    assert one["traits"] == ["CUSTOM_A", "CUSTOM_B"]
    assert [(p["address"], p["physical_network"]) for p in one["ports"]] == [
        ("52:54:00:00:01:01", "physnet1"),
        ("52:54:00:00:01:02", None),
    ]
    assert one["driver_info"]["bmc_password"] == "******"
    with ctx.session() as s:
        stored = s.get_one(Node, one["uuid"]).driver_info["bmc_password"]
        assert ctx.cipher.decrypt(stored) == "pw-one"
        assert s.scalar(select(Port).where(Port.address == "52:54:00:00:02:01")) is None
    assert client.get("/v1/nodes/csv-2", headers=admin).status_code == 404
    assert client.get("/v1/nodes/csv-3", headers=admin).status_code == 200


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_atomic_import_creates_nothing_when_a_row_is_bad(ctx, client, admin, content_type) -> None:
    if content_type == "text/csv":
        data = CSV.encode()
    else:
        data = json.dumps([node_body(1), node_body(2, properties={"cpus": 0})]).encode()
    r = client.post(
        "/v1/nodes/import?atomic=true", data=data, content_type=content_type, headers=admin
    )
    assert r.status_code == 200, r.json
    assert r.json["created"] == 0 and r.json["failed"] == 1
    assert {row["status"] for row in r.json["results"]} == {"rolled back", "error"}
    assert all(row["uuid"] is None for row in r.json["results"])
    assert counts(ctx) == (0, 0)


def test_atomic_import_of_good_rows_creates_them_all(ctx, client, admin) -> None:
    r = client.post(
        "/v1/nodes/import?atomic=true", json=[node_body(i) for i in range(3)], headers=admin
    )
    assert r.json["created"] == 3 and r.json["failed"] == 0
    assert counts(ctx) == (3, 3)


def test_import_of_a_malformed_document_is_422(ctx, client, admin) -> None:
    # Not JSON at all (syntax, encoding): 400; JSON of the wrong shape: 422.
    for payload, status in (
        (b"{not json", 400),
        (b'{"nodes": 3}', 422),
        (b"[1, 2]", 422),
        (b'"a string"', 422),
        (b"\xff\xfe", 400),
    ):
        r = client.post(
            "/v1/nodes/import", data=payload, content_type="application/json", headers=admin
        )
        assert r.status_code == status and r.mimetype == "application/problem+json", payload
        assert r.json["errors"][0]["field"] == "body", payload
    assert counts(ctx) == (0, 0)


def test_cli_node_import(ctx, tmp_path) -> None:
    from portal.cli import main

    good = tmp_path / "nodes.json"
    good.write_text(json.dumps({"nodes": [node_body(1), node_body(2)]}))
    result = CliRunner().invoke(main, ["node", "import", str(good)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["created"] == 2 and out["failed"] == 0
    assert [r["status"] for r in out["results"]] == ["created", "created"]

    mixed = tmp_path / "nodes.csv"
    mixed.write_text(CSV)
    result = CliRunner().invoke(main, ["node", "import", "--atomic", str(mixed)])
    assert result.exit_code == 1
    out = json.loads(result.output)
    assert out["created"] == 0 and out["results"][1]["row"] == 2
    result = CliRunner().invoke(main, ["node", "import", str(mixed)])
    assert result.exit_code == 1  # a failed row makes the command fail, good rows are kept
    assert json.loads(result.output)["created"] == 2
    with ctx.session() as s:
        assert set(s.scalars(select(Node.name))) == {"node-1", "node-2", "csv-1", "csv-3"}
        pw = s.scalar(select(Node.driver_info).where(Node.name == "csv-3"))["bmc_password"]
        assert pw.startswith(PREFIX) and ctx.cipher.decrypt(pw) == "pw-three"

    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    result = CliRunner().invoke(main, ["node", "import", str(broken)])
    assert result.exit_code != 0 and "not valid JSON" in result.output


# -- listing ---------------------------------------------------------------------------------


def test_list_pagination_with_limit_marker_and_next_link(client, admin) -> None:
    made = [create(client, admin, i)["uuid"] for i in range(5)]
    seen: list[str] = []
    url: str | None = "/v1/nodes?limit=2"
    pages = 0
    while url:
        r = client.get(url, headers=admin)
        assert r.status_code == 200, r.json
        page = r.json
        assert len(page["nodes"]) <= 2
        seen += [n["uuid"] for n in page["nodes"]]
        pages += 1
        if page["next"]:
            assert (
                "limit=2" in page["next"] and f"marker={page['nodes'][-1]['uuid']}" in page["next"]
            )
            url = path_of(page["next"])
        else:
            url = None
    assert pages == 3
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    # The marker must name an existing node.
    r = client.get("/v1/nodes?marker=nope", headers=admin)
    assert r.status_code == 404 and r.json["errors"][0]["field"] == "marker"


def test_list_sorting(client, admin) -> None:
    for i, name in enumerate(["charlie", "alpha", "echo", "bravo", "delta"]):
        create(client, admin, i, name=name)
    names = [n["name"] for n in client.get("/v1/nodes?sort_key=name", headers=admin).json["nodes"]]
    assert names == ["alpha", "bravo", "charlie", "delta", "echo"]
    desc = client.get("/v1/nodes?sort_key=name&sort_dir=desc", headers=admin).json["nodes"]
    assert [n["name"] for n in desc] == list(reversed(names))
    # Pagination keeps the sort order across pages.
    first = client.get("/v1/nodes?sort_key=name&sort_dir=desc&limit=3", headers=admin).json
    assert [n["name"] for n in first["nodes"]] == ["echo", "delta", "charlie"]
    assert "sort_key=name" in first["next"] and "sort_dir=desc" in first["next"]
    second = client.get(path_of(first["next"]), headers=admin).json
    assert [n["name"] for n in second["nodes"]] == ["bravo", "alpha"] and second["next"] is None


def test_list_filters(ctx, client, admin, world) -> None:
    a = create(client, admin, 1)
    b = create(client, admin, 2, resource_class="gpu")
    c = create(client, admin, 3, owner=world.alice_project)
    client.put(f"/v1/nodes/{b['uuid']}/maintenance", json={"reason": "x"}, headers=admin)
    client.put(f"/v1/nodes/{c['uuid']}/states/provision", json={"target": "manage"}, headers=admin)

    def uuids(query: str) -> set[str]:
        r = client.get(f"/v1/nodes?{query}", headers=admin)
        assert r.status_code == 200, r.json
        return {n["uuid"] for n in r.json["nodes"]}

    assert uuids("") == {a["uuid"], b["uuid"], c["uuid"]}
    assert uuids("resource_class=gpu") == {b["uuid"]}
    assert uuids("maintenance=true") == {b["uuid"]}
    assert uuids("maintenance=false") == {a["uuid"], c["uuid"]}
    assert uuids("provision_state=verifying") == {c["uuid"]}
    assert uuids("provision_state=enroll&resource_class=baremetal") == {a["uuid"]}
    assert uuids(f"owner={world.alice_project}") == {c["uuid"]}
    assert uuids("driver=fake") == {a["uuid"], b["uuid"], c["uuid"]}
    assert uuids("associated=false") == {a["uuid"], b["uuid"], c["uuid"]}
    assert uuids("associated=true") == set()


def test_list_gives_each_node_as_its_own_get_does(client, admin, world) -> None:
    """The list is serialized by hand (``dump_nodes``) for speed; byte for byte it must say
    what ``GET /v1/nodes/<id>`` (marshmallow's ``NodeOut``) says: ports, redacted secrets,
    every timestamp (set and unset), owner, maintenance."""
    plain = create(client, admin, 1, ports=[])
    two_ports = create(
        client,
        admin,
        2,
        ports=[{"address": "52:54:00:00:02:02"}, {"address": "52:54:00:00:02:01"}],
        capabilities={"boot_mode": "uefi"},
        traits=["CUSTOM_A"],
        owner=world.alice_project,
    )
    busy = create(client, admin, 3)
    client.put(
        f"/v1/nodes/{busy['uuid']}/states/provision", json={"target": "manage"}, headers=admin
    )
    client.put(f"/v1/nodes/{busy['uuid']}/maintenance", json={"reason": "fan"}, headers=admin)
    r = client.get("/v1/nodes?limit=1000", headers=admin)
    assert r.status_code == 200
    listed = {n["uuid"]: n for n in r.json["nodes"]}
    assert set(listed) == {plain["uuid"], two_ports["uuid"], busy["uuid"]}
    for uuid, node in listed.items():
        assert node == client.get(f"/v1/nodes/{uuid}", headers=admin).json
    assert listed[busy["uuid"]]["provision_updated_at"] is not None
    assert listed[busy["uuid"]]["updated_at"] is not None
    assert listed[plain["uuid"]]["updated_at"] is None
    assert listed[two_ports["uuid"]]["driver_info"]["bmc_password"] == "******"
    assert [p["address"] for p in listed[two_ports["uuid"]]["ports"]] == [
        "52:54:00:00:02:01",
        "52:54:00:00:02:02",
    ]
    # Timestamps are written as isoformat() writes them (RFC 3339 with the UTC offset).
    assert listed[busy["uuid"]]["created_at"].endswith("+00:00")


# -- maintenance ------------------------------------------------------------------------------


def test_maintenance_set_and_unset(ctx, client, admin) -> None:
    node = create(client, admin, 1)
    url = f"/v1/nodes/{node['uuid']}"
    r = client.put(f"{url}/maintenance", json={"reason": "replacing a DIMM"}, headers=admin)
    assert r.status_code == 200
    assert r.json["maintenance"] is True and r.json["maintenance_reason"] == "replacing a DIMM"
    r = client.put(f"{url}/states/provision", json={"target": "manage"}, headers=admin)
    assert r.status_code == 409 and "replacing a DIMM" in r.json["detail"]

    r = client.delete(f"{url}/maintenance", headers=admin)
    assert r.status_code == 200
    assert r.json["maintenance"] is False and r.json["maintenance_reason"] is None
    r = client.put(f"{url}/states/provision", json={"target": "manage"}, headers=admin)
    assert r.status_code == 202
    assert r.json["provision_state"] == "verifying"
    assert r.json["target_provision_state"] == "manageable"

    with ctx.session() as s:
        events = [
            (e.payload["maintenance"], e.payload["reason"], e.actor)
            for e in s.scalars(
                select(Event)
                .where(Event.resource_id == node["uuid"], Event.type == "node.maintenance")
                .order_by(Event.id)
            )
        ]
    assert events == [(True, "replacing a DIMM", "user:root"), (False, None, "user:root")]


def test_maintenance_without_a_reason(client, admin) -> None:
    create(client, admin, 1)
    r = client.put("/v1/nodes/node-1/maintenance", json={}, headers=admin)
    assert r.status_code == 200 and r.json["maintenance"] is True
    r = client.put("/v1/nodes/node-1/states/provision", json={"target": "manage"}, headers=admin)
    assert r.status_code == 409 and "no reason given" in r.json["detail"]
