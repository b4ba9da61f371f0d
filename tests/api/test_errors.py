"""Errors are RFC 9457 problem documents with the right status: 401, 403, 404, 409, 422."""

from __future__ import annotations

from typing import Any

import pytest

from portal.api.problems import CONTENT_TYPE
from portal.services import nodes
from portal.services.identity import SYSTEM
from tests.helpers import headers, node_body, seed_world


def assert_problem(r: Any, status: int, title: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == CONTENT_TYPE == "application/problem+json"
    body = r.get_json(force=True)
    assert body["status"] == status and body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    if title is not None:
        assert body["title"] == title
    return body


def fields_of(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


def enrolled(ctx, i: int = 1, **over: Any) -> str:
    with ctx.session() as s:
        return nodes.create_node(ctx, s, node_body(i, **over), SYSTEM).id


# -- 401 -----------------------------------------------------------------------------------


# Many cases per test (one seeded world each) keep the suite fast; each assertion names its case.


def test_no_token_is_401_with_a_challenge(client, world) -> None:
    for path in ("/v1/instances", "/v1/nodes", "/v1/flavors", "/v1/events", "/v1/nodes/x"):
        r = client.get(path)
        body = assert_problem(r, 401, "Unauthorized")
        assert "X-Auth-Token" in body["detail"], path
        assert "Bearer" in r.headers["WWW-Authenticate"], path


def test_bad_token_is_401(client, world) -> None:
    for hdrs in (
        {"X-Auth-Token": "bms_not-a-real-token"},
        {"X-Auth-Token": "no-prefix-at-all"},
        {"Authorization": "Bearer bms_forged"},
        {"Authorization": "Basic YWxpY2U6cHc="},
        {"X-Auth-Token": "bms_" + "x" * 300},
    ):
        r = client.get("/v1/instances", headers=hdrs)
        body = assert_problem(r, 401)
        assert body["detail"].startswith(("invalid, expired or revoked", "no token")), hdrs


def test_bearer_header_is_accepted_like_x_auth_token(client, world) -> None:
    token = world.alice["X-Auth-Token"]
    r = client.get("/v1/instances", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json["instances"] == []


def _issue_token_for(client, world, user_name: str) -> dict[str, Any]:
    users = client.get("/v1/users?limit=100", headers=world.admin).json["users"]
    user = next(u for u in users if u["name"] == user_name)
    r = client.post(
        f"/v1/users/{user['id']}/tokens", json={"description": "t"}, headers=world.admin
    )
    assert r.status_code == 201, r.json
    assert r.json["token"].startswith("bms_") and r.json["prefix"] == r.json["token"][:12]
    return r.json


def test_revoked_token_is_401_once_the_cache_is_cleared(app, client, world) -> None:
    tok = _issue_token_for(client, world, "alice")
    mine = headers(tok["token"])
    assert client.get("/v1/instances", headers=mine).status_code == 200
    # A user may revoke their own token, with that token.
    assert client.delete(f"/v1/tokens/{tok['id']}", headers=mine).status_code == 204
    # Validated tokens are trusted for a few seconds without a database round trip ...
    assert client.get("/v1/instances", headers=mine).status_code == 200
    # ... after which the revocation is seen.
    app.extensions["bms_token_cache"].clear()
    assert_problem(client.get("/v1/instances", headers=mine), 401)
    # Other tokens of the same user are unaffected.
    assert client.get("/v1/instances", headers=world.alice).status_code == 200


def test_revoked_token_is_401_on_a_fresh_app(ctx, client, world) -> None:
    from portal.app import create_app

    tok = _issue_token_for(client, world, "bob")
    assert client.delete(f"/v1/tokens/{tok['id']}", headers=world.admin).status_code == 204
    fresh = create_app(context=ctx).test_client()
    assert_problem(fresh.get("/v1/instances", headers=headers(tok["token"])), 401)


def test_expired_token_is_401(client, world) -> None:
    users = client.get("/v1/users?limit=100", headers=world.admin).json["users"]
    bob = next(u for u in users if u["name"] == "bob")
    r = client.post(
        f"/v1/users/{bob['id']}/tokens",
        json={"expires_at": "2000-01-01T00:00:00+00:00"},
        headers=world.admin,
    )
    assert r.status_code == 201
    assert_problem(client.get("/v1/instances", headers=headers(r.json["token"])), 401)


def test_another_users_token_cannot_be_revoked_and_is_hidden(client, world) -> None:
    tok = _issue_token_for(client, world, "alice")
    body = assert_problem(client.delete(f"/v1/tokens/{tok['id']}", headers=world.bob), 404)
    assert tok["id"] in body["detail"]
    assert client.get("/v1/instances", headers=headers(tok["token"])).status_code == 200


# -- 403 -----------------------------------------------------------------------------------


ADMIN_ONLY = [
    ("get", "/v1/nodes", None),
    ("post", "/v1/nodes", node_body(9)),
    ("get", "/v1/ports", None),
    ("post", "/v1/flavors", {"name": "x", "vcpus": 1, "ram_mb": 1, "disk_gb": 1}),
    ("get", "/v1/projects", None),
    ("post", "/v1/projects", {"name": "mine"}),
    ("get", "/v1/users", None),
    ("post", "/v1/nodes/import", []),
]


def test_member_calling_an_admin_endpoint_is_403(ctx, client, world) -> None:
    for method, path, body in ADMIN_ONLY:
        r = getattr(client, method)(path, json=body, headers=world.alice)
        problem = assert_problem(r, 403, "Forbidden")
        assert "admin" in problem["detail"], path
    # Nothing was created on the way.
    assert client.get("/v1/nodes", headers=world.admin).json["nodes"] == []
    assert [f["name"] for f in client.get("/v1/flavors", headers=world.admin).json["flavors"]] == [
        "bm.small"
    ]


def test_member_cannot_set_quotas(client, world) -> None:
    r = client.put(
        f"/v1/projects/{world.alice_project}/quota", json={"instances": 99}, headers=world.alice
    )
    assert_problem(r, 403)


def test_reader_cannot_create_an_instance_but_can_read(client, world) -> None:
    r = client.post(
        "/v1/instances",
        json={"name": "vm", "flavor": world.flavor, "image": world.image},
        headers=world.reader,
    )
    body = assert_problem(r, 403)
    assert "reader" in body["detail"]
    assert client.get("/v1/instances", headers=world.reader).status_code == 200
    assert client.get("/v1/instances", headers=world.alice).json["instances"] == []


def test_reader_cannot_create_keypairs_or_images(client, world) -> None:
    r = client.post("/v1/images", json={"name": "x"}, headers=world.reader)
    assert_problem(r, 403)
    r = client.post(
        "/v1/keypairs", json={"name": "k", "public_key": "ssh-ed25519 AAAA"}, headers=world.reader
    )
    assert_problem(r, 403)


# -- 404 -----------------------------------------------------------------------------------


def test_another_tenants_instance_is_404_not_403(client, world) -> None:
    r = client.post(
        "/v1/instances",
        json={"name": "vm", "flavor": world.flavor, "image": world.image},
        headers=world.alice,
    )
    assert r.status_code == 202
    iid = r.json["id"]
    for call in (client.get, client.delete):
        body = assert_problem(call(f"/v1/instances/{iid}", headers=world.bob), 404, "Not found")
        assert iid in body["detail"]
    # The same answer as for an instance that does not exist at all.
    assert_problem(client.get("/v1/instances/nope", headers=world.bob), 404)
    assert iid not in {
        i["id"] for i in client.get("/v1/instances", headers=world.bob).json["instances"]
    }
    # Nothing happened to it, and its owner and admins still see it.
    assert client.get(f"/v1/instances/{iid}", headers=world.alice).json["status"] == "BUILD"
    assert client.get(f"/v1/instances/{iid}", headers=world.admin).status_code == 200


def test_another_tenants_project_and_quota_are_404(client, world) -> None:
    assert_problem(client.get(f"/v1/projects/{world.alice_project}", headers=world.bob), 404)
    assert_problem(client.get(f"/v1/projects/{world.alice_project}/quota", headers=world.bob), 404)
    assert client.get(f"/v1/projects/{world.alice_project}", headers=world.alice).status_code == 200


def test_unknown_node_is_404(client, world) -> None:
    body = assert_problem(client.get("/v1/nodes/ghost", headers=world.admin), 404)
    assert "ghost" in body["detail"]


def test_unknown_route_is_a_problem_too(client, world) -> None:
    assert_problem(client.get("/v1/no-such-thing", headers=world.admin), 404)


# -- 409 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "allowed"), [("provide", ["manage"]), ("undeploy", ["manage"])])
def test_invalid_provision_action_names_state_and_allowed_actions(
    ctx, client, world, target: str, allowed: list[str]
) -> None:
    nid = enrolled(ctx)
    r = client.put(
        f"/v1/nodes/{nid}/states/provision", json={"target": target}, headers=world.admin
    )
    body = assert_problem(r, 409, "Conflict")
    assert body["state"] == "enroll" and body["allowed"] == allowed
    assert f"cannot '{target}' node in state 'enroll'" in body["detail"]
    assert "allowed: manage" in body["detail"]
    node = client.get(f"/v1/nodes/{nid}", headers=world.admin).json
    assert node["provision_state"] == "enroll" and node["allowed_actions"] == ["manage"]


def test_deploy_through_the_node_api_is_refused(ctx, client, world) -> None:
    nid = enrolled(ctx)
    r = client.put(
        f"/v1/nodes/{nid}/states/provision", json={"target": "deploy"}, headers=world.admin
    )
    body = assert_problem(r, 409)
    assert "create an instance" in body["detail"]


def test_unknown_provision_target_is_422(ctx, client, world) -> None:
    nid = enrolled(ctx)
    r = client.put(
        f"/v1/nodes/{nid}/states/provision", json={"target": "explode"}, headers=world.admin
    )
    body = assert_problem(r, 422)
    assert fields_of(body) == {"target"} and "manage" in body["detail"]


def test_provision_action_in_maintenance_is_409(ctx, client, world) -> None:
    nid = enrolled(ctx)
    r = client.put(f"/v1/nodes/{nid}/maintenance", json={"reason": "bad DIMM"}, headers=world.admin)
    assert r.status_code == 200 and r.json["maintenance"] is True
    r = client.put(
        f"/v1/nodes/{nid}/states/provision", json={"target": "manage"}, headers=world.admin
    )
    body = assert_problem(r, 409)
    assert "maintenance" in body["detail"] and "bad DIMM" in body["detail"]
    assert body["state"] == "enroll"
    assert client.get(f"/v1/nodes/{nid}", headers=world.admin).json["provision_state"] == "enroll"


def test_deleting_an_instance_twice_is_409(ctx, client, world) -> None:
    iid = client.post(
        "/v1/instances",
        json={"name": "vm", "flavor": world.flavor, "image": world.image},
        headers=world.alice,
    ).json["id"]
    assert client.delete(f"/v1/instances/{iid}", headers=world.alice).status_code == 202
    body = assert_problem(client.delete(f"/v1/instances/{iid}", headers=world.alice), 409)
    assert body["state"] == "DELETING"


# -- 422 -----------------------------------------------------------------------------------


BAD_NODES = [
    (node_body(1, ports=[{"address": "not-a-mac"}]), "ports.0.address"),
    (node_body(1, ports=[{"address": "52:54:00:12:00:01"}, {"address": "zz"}]), "ports.1.address"),
    (node_body(1, traits=["lower_case"]), "traits.0"),
    (node_body(1, properties={"cpus": -4}), "properties.cpus"),
    (node_body(1, properties={"cpus": "eight"}), "properties.cpus"),
    (node_body(1, name="0b6f9a8e-4fcb-4f2a-8a31-1a2b3c4d5e6f"), "name"),
    (node_body(1, bogus=True), "bogus"),
    ({**node_body(1), "ports": [{"address": "52:54:00:12:00:01", "speed": 10}]}, "ports.0.speed"),
]


def test_invalid_node_body_is_422_naming_the_field(client, world) -> None:
    for body, field in BAD_NODES:
        problem = assert_problem(client.post("/v1/nodes", json=body, headers=world.admin), 422)
        assert field in fields_of(problem), (field, problem)
        assert field in problem["detail"], (field, problem)
        assert all(e["location"] == "json" for e in problem["errors"])
    assert client.get("/v1/nodes", headers=world.admin).json["nodes"] == []


def test_unknown_driver_is_422(client, world) -> None:
    body = assert_problem(
        client.post("/v1/nodes", json=node_body(1, driver="nope"), headers=world.admin), 422
    )
    assert fields_of(body) == {"driver"} and "fake" in body["detail"]


BAD_FLAVORS = [
    ({"name": "f", "vcpus": -1, "ram_mb": 1024, "disk_gb": 10}, "vcpus"),
    ({"name": "f", "vcpus": 0, "ram_mb": 1024, "disk_gb": 10}, "vcpus"),
    ({"name": "f", "vcpus": "four", "ram_mb": 1024, "disk_gb": 10}, "vcpus"),
    ({"name": "f", "ram_mb": 1024, "disk_gb": 10}, "vcpus"),
    ({"name": "f", "vcpus": 2, "ram_mb": 1024, "disk_gb": -1}, "disk_gb"),
    ({"name": "f", "vcpus": 2, "ram_mb": 1024, "disk_gb": 10, "gpus": 1}, "gpus"),
    ({"name": "f", "vcpus": 2, "ram_mb": 1024, "disk_gb": 10, "cpu_arch": "z80"}, "cpu_arch"),
]


def test_invalid_flavor_body_is_422_naming_the_field(client, world) -> None:
    for body, field in BAD_FLAVORS:
        problem = assert_problem(client.post("/v1/flavors", json=body, headers=world.admin), 422)
        assert fields_of(problem) == {field}, (body, problem)
        assert all(e["location"] == "json" for e in problem["errors"])
    assert [f["name"] for f in client.get("/v1/flavors", headers=world.admin).json["flavors"]] == [
        "bm.small"
    ]


def test_bad_extra_spec_is_422_naming_the_key(client, world) -> None:
    body = {
        "name": "f",
        "vcpus": 2,
        "ram_mb": 1024,
        "disk_gb": 10,
        "extra_specs": {"trait:CUSTOM_GPU": "maybe"},
    }
    problem = assert_problem(client.post("/v1/flavors", json=body, headers=world.admin), 422)
    assert fields_of(problem) == {"extra_specs.trait:CUSTOM_GPU"}


def test_invalid_instance_body_is_422(client, world) -> None:
    for body, field in (
        ({"name": "bad name!", "flavor": "bm.small", "image": world.image}, "name"),
        ({"name": "vm", "image": world.image}, "flavor"),
        (
            {"name": "vm", "flavor": "bm.small", "image": world.image, "admin_pass": "pw"},
            "admin_pass",
        ),
        (
            {"name": "vm", "flavor": "bm.small", "image": world.image, "key_names": ["x"]},
            "key_names",
        ),
    ):
        r = client.post("/v1/instances", json=body, headers=world.alice)
        assert fields_of(assert_problem(r, 422)) == {field}, body
    assert client.get("/v1/instances", headers=world.alice).json["instances"] == []


def test_non_json_body_is_rejected(client, world) -> None:
    r = client.post("/v1/flavors", data="name=f", content_type="text/plain", headers=world.admin)
    assert r.status_code in (415, 422) and r.mimetype == CONTENT_TYPE


def test_bad_or_unknown_query_parameters_are_rejected(client, world) -> None:
    for query in (
        "/v1/nodes?colour=blue",
        "/v1/nodes?provisionstate=available",  # a typo must not silently list everything
        "/v1/nodes?limit=0",
        "/v1/nodes?limit=abc",
        "/v1/nodes?sort_dir=sideways",
        "/v1/nodes?provision_state=on-fire",
        "/v1/nodes?sort_key=driver_info",
    ):
        problem = assert_problem(client.get(query, headers=world.admin), 422)
        name = query.split("?")[1].split("=")[0]
        assert fields_of(problem) == {name}, (query, problem)


def test_unknown_query_parameters_are_rejected_everywhere(client, world) -> None:
    for path in (
        "/v1/instances",
        "/v1/flavors",
        "/v1/images",
        "/v1/keypairs",
        "/v1/events",
        "/v1/projects?limit=1",
    ):
        who = world.admin if path.startswith("/v1/projects") else world.alice
        sep = "&" if "?" in path else "?"
        problem = assert_problem(client.get(f"{path}{sep}foo=1", headers=who), 422)
        assert fields_of(problem) == {"foo"}, path
        assert problem["errors"][0]["location"] == "query"
        assert client.get(path, headers=who).status_code == 200, path


def test_unexpected_errors_are_500_problems_without_internals(ctx, client, world, monkeypatch):
    from portal.services import flavors

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(flavors, "visible", boom)
    body = assert_problem(client.get("/v1/flavors", headers=world.alice), 500)
    assert "secret internals" not in body["detail"]
