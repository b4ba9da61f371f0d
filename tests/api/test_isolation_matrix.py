"""Tenant isolation matrix, generated from the OpenAPI document.

Tenant A (project alpha) owns one of every resource; then every operation of every path
with an id parameter is called with A's ids by:

- B's member and B's reader (another project): 404 on every tenant-visible operation
  (never 403, which would confirm the id exists), 403 on admin-only ones;
- A's reader: 403 on every write, A's own ids or not ("reader never writes");
- A's member: 403 on every admin-only operation ("member never reaches admin paths").

Every list (GET without an id) is read by B's member and reader: none of A's ids appears
(admin-only lists: 403). A's resources all still exist at the end.

The ``admin`` role is the cloud operator's, whatever its project (tenants/roles.py): an
admin sees every project, so there is no tenant-scoped admin to put in the matrix.

A path is covered when it appears in the document: a path with an id parameter and no
entry in ``FACTORIES`` fails the test, as does a tenant write with a body and no entry
in ``BODIES``. The spec's ``x-required-role`` says which operations are admin-only.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from portal.services import identity
from tenants.roles import READER
from tests.helpers import headers, node_body, seed_world

METHODS = ("get", "post", "put", "patch", "delete")


def _public_key() -> str:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    blob = b"\x00\x00\x00\x0bssh-ed25519" + len(raw).to_bytes(4, "big") + raw
    return "ssh-ed25519 " + base64.b64encode(blob).decode() + " a@alpha"


def _created(r: Any) -> dict[str, Any]:
    assert r.status_code in (200, 201, 202), r.json
    return r.json


@pytest.fixture
def tenants(client, ctx) -> dict[str, Any]:
    """A's resources (and the admin-only ones), and the callers."""
    w = seed_world(ctx)
    with ctx.session() as s:
        from tenants.models import Project

        beta = s.get(Project, w.bob_project)
        _, b_reader = identity.create_token(
            s, identity.create_user(s, "bella", beta, READER), None, None
        )
    a, admin = w.alice, w.admin
    flavor = _created(
        client.post(
            "/v1/flavors",
            json={
                "name": "a.private",
                "vcpus": 2,
                "ram_mb": 2048,
                "disk_gb": 20,
                "is_public": False,
            },
            headers=admin,
        )
    )
    _created(
        client.post(
            f"/v1/flavors/{flavor['id']}/access",
            json={"project_id": w.alice_project},
            headers=admin,
        )
    )
    image = _created(client.post("/v1/images", json={"name": "a-image"}, headers=a))
    keypair = _created(
        client.post("/v1/keypairs", json={"name": "a-key", "public_key": _public_key()}, headers=a)
    )
    group = _created(
        client.post(
            "/v1/server-groups", json={"name": "a-group", "policy": "anti-affinity"}, headers=a
        )
    )
    instance = _created(
        client.post(
            "/v1/instances", json={"name": "a-vm", "flavor": w.flavor, "image": w.image}, headers=a
        )
    )
    users = client.get(f"/v1/users?project_id={w.alice_project}", headers=admin).json["users"]
    alice_id = next(u["id"] for u in users if u["name"] == "alice")
    token = _created(client.post(f"/v1/users/{alice_id}/tokens", json={}, headers=a))
    node = _created(
        client.post("/v1/nodes", json=node_body(1, owner=w.alice_project), headers=admin)
    )
    port = node["ports"][0]
    segments = _created(
        client.post(
            "/v1/segment-ranges",
            json={"physical_network": "physnet1", "minimum": 100, "maximum": 199},
            headers=admin,
        )
    )
    network = _created(client.post("/v1/networks", json={"name": "a-net"}, headers=a))
    subnet = _created(
        client.post("/v1/subnets", json={"network": "a-net", "cidr": "10.1.0.0/24"}, headers=a)
    )
    aggregate = _created(
        client.post(
            "/v1/aggregates", json={"name": "a-agg", "projects": [w.alice_project]}, headers=admin
        )
    )
    switch = _created(
        client.post(
            "/v1/switches",
            json={"name": "a-tor", "driver": "fake", "settings": {"provisioning_vlan": 10}},
            headers=admin,
        )
    )
    return {
        "world": w,
        "callers": {
            "B member": w.bob,
            "B reader": headers(b_reader),
            "A reader": w.reader,
            "A member": w.alice,
        },
        "ids": {
            "flavor": flavor["id"],
            "image": image["id"],
            "keypair": keypair["name"],
            "group": group["id"],
            "instance": instance["id"],
            "user": alice_id,
            "token": token["id"],
            "project": w.alice_project,
            "node": node["uuid"],
            "port": port["uuid"],
            "aggregate": aggregate["id"],
            "switch": switch["id"],
            "network": network["id"],
            "subnet": subnet["id"],
            "segment_range": segments["id"],
        },
    }


Ids = dict[str, str]
# Path template -> A's values for its parameters. Add one for every new path with an id.
FACTORIES: dict[str, Callable[[Ids], dict[str, str]]] = {
    "/v1/aggregates/{aggregate_id}": lambda i: {"aggregate_id": i["aggregate"]},
    "/v1/flavors/{ident}": lambda i: {"ident": i["flavor"]},
    "/v1/flavors/{ident}/access": lambda i: {"ident": i["flavor"]},
    "/v1/flavors/{ident}/access/{project_id}": lambda i: {
        "ident": i["flavor"],
        "project_id": i["project"],
    },
    "/v1/flavors/{ident}/capacity": lambda i: {"ident": i["flavor"]},
    "/v1/images/{image_id}": lambda i: {"image_id": i["image"]},
    "/v1/images/{image_id}/file": lambda i: {"image_id": i["image"]},
    "/v1/images/{image_id}/members": lambda i: {"image_id": i["image"]},
    "/v1/instances/{instance_id}": lambda i: {"instance_id": i["instance"]},
    "/v1/keypairs/{name}": lambda i: {"name": i["keypair"]},
    "/v1/nodes/{ident}": lambda i: {"ident": i["node"]},
    "/v1/nodes/{ident}/states/provision": lambda i: {"ident": i["node"]},
    "/v1/nodes/{ident}/states/power": lambda i: {"ident": i["node"]},
    "/v1/nodes/{ident}/maintenance": lambda i: {"ident": i["node"]},
    "/v1/nodes/{ident}/lock": lambda i: {"ident": i["node"]},
    "/v1/nodes/{ident}/validate": lambda i: {"ident": i["node"]},
    "/v1/nodes/{ident}/sensors": lambda i: {"ident": i["node"]},
    "/v1/nodes/{ident}/inventory": lambda i: {"ident": i["node"]},
    "/v1/ports/{port_id}": lambda i: {"port_id": i["port"]},
    "/v1/projects/{project_id}": lambda i: {"project_id": i["project"]},
    "/v1/projects/{project_id}/quota": lambda i: {"project_id": i["project"]},
    "/v1/server-groups/{group_id}": lambda i: {"group_id": i["group"]},
    "/v1/switches/{ident}": lambda i: {"ident": i["switch"]},
    "/v1/switches/{ident}/ports": lambda i: {"ident": i["switch"]},
    "/v1/users/{user_id}/tokens": lambda i: {"user_id": i["user"]},
    "/v1/networks/{network_id}": lambda i: {"network_id": i["network"]},
    "/v1/subnets/{subnet_id}": lambda i: {"subnet_id": i["subnet"]},
    "/v1/segment-ranges/{range_id}": lambda i: {"range_id": i["segment_range"]},
    "/v1/tokens/{token_id}": lambda i: {"token_id": i["token"]},
}
# "METHOD path" -> a valid request body, for tenant writes that take one (the body is read
# before the lookup, so an invalid one would answer 422 and prove nothing).
BODIES: dict[str, dict[str, Any]] = {
    "PATCH /v1/images/{image_id}": {"json": {"name": "taken-over"}},
    "PUT /v1/images/{image_id}/file": {
        "data": b"x" * 512,
        "content_type": "application/octet-stream",
    },
    "POST /v1/images/{image_id}/members": {"json": {"project_id": "{bob_project}"}},
    "POST /v1/users/{user_id}/tokens": {"json": {}},
    "PATCH /v1/networks/{network_id}": {"json": {"name": "taken-over"}},
    "PATCH /v1/subnets/{subnet_id}": {"json": {"name": "taken-over"}},
}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def _body(method: str, path: str, op: dict[str, Any], world: Any) -> dict[str, Any]:
    key = f"{method.upper()} {path}"
    if "requestBody" not in op or op.get("x-required-role") == "admin":
        return {}  # admin-only: the role check answers before the body is read
    assert key in BODIES, f"{key} takes a body: add a valid one to BODIES in {__name__}"
    body = json.loads(json.dumps(BODIES[key], default=lambda b: b.decode()))
    if "json" in body:
        body["json"] = json.loads(
            json.dumps(body["json"]).replace("{bob_project}", world.bob_project)
        )
    if "data" in BODIES[key]:
        body["data"] = BODIES[key]["data"]
    return body


# A caller's own credentials, which every role manages (a reader needs a token to read):
# someone else's user or token is not found (404), for readers too.
SELF_SERVICE = {"POST /v1/users/{user_id}/tokens", "DELETE /v1/tokens/{token_id}"}


def _expected(caller: str, method: str, path: str, op: dict[str, Any]) -> int | None:
    if op.get("x-required-role") == "admin":
        return 403  # member never reaches admin paths (nor does a reader)
    if f"{method.upper()} {path}" in SELF_SERVICE:
        return None if caller == "A member" else 404  # alice's own user and token
    if method != "get" and caller.endswith("reader"):
        return 403  # reader never writes
    if caller.startswith("B"):
        return 404  # another tenant's id: not found, as if it did not exist
    return None  # A's own reads and writes: not what this matrix is about


def test_isolation_matrix_covers_every_path(client, tenants) -> None:
    spec = client.get("/v1/openapi.json").json
    w, ids, callers = tenants["world"], tenants["ids"], tenants["callers"]
    checked: list[str] = []
    wrong: list[str] = []
    ops = _operations(spec)
    # Deletes last, so every other operation still finds A's resources.
    ops.sort(key=lambda o: o[1] == "delete")
    for path, method, op in ops:
        if "{" not in path:
            continue
        assert path in FACTORIES, (
            f"{path} has an id parameter but no resource factory: add one to FACTORIES in "
            f"{__name__} so the isolation matrix covers it"
        )
        url = path.format(**FACTORIES[path](ids))
        for caller, who in callers.items():
            expected = _expected(caller, method, path, op)
            if expected is None:
                continue
            kwargs = _body(method, path, op, w)
            r = client.open(url, method=method.upper(), headers=who, **kwargs)
            checked.append(f"{caller} {method.upper()} {path}")
            if r.status_code != expected:
                wrong.append(
                    f"{caller} {method.upper()} {url}: {r.status_code}, expected {expected}: {r.data[:200]!r}"
                )
    print(f"isolation matrix: {len(checked)} calls, {len(wrong)} wrong")
    assert not wrong, "\n".join(wrong)
    assert len(checked) > 100, len(checked)
    # Nothing of A's was changed or removed by the calls above.
    a = callers["A member"]
    assert client.get(f"/v1/images/{ids['image']}", headers=a).json["name"] == "a-image"
    for url in (
        f"/v1/flavors/{ids['flavor']}",
        f"/v1/keypairs/{ids['keypair']}",
        f"/v1/server-groups/{ids['group']}",
        f"/v1/instances/{ids['instance']}",
        f"/v1/networks/{ids['network']}",
        f"/v1/subnets/{ids['subnet']}",
    ):
        assert client.get(url, headers=a).status_code == 200, url
    assert client.get(f"/v1/nodes/{ids['node']}", headers=w.admin).status_code == 200
    assert client.get(f"/v1/switches/{ids['switch']}", headers=w.admin).status_code == 200
    tokens = client.delete(f"/v1/tokens/{ids['token']}", headers=a)
    assert tokens.status_code == 204  # it still existed: B's DELETE did not revoke it


def test_lists_never_show_another_tenants_items(client, tenants) -> None:
    spec = client.get("/v1/openapi.json").json
    ids, callers = tenants["ids"], tenants["callers"]
    # The node, aggregate, switch and range are admin-made; the rest are A's. Names too,
    # for keypairs.
    admin_made = ("node", "port", "aggregate", "switch", "segment_range")
    secret = [v for k, v in ids.items() if k not in admin_made]
    lists = [(p, op) for p, m, op in _operations(spec) if m == "get" and "{" not in p]
    assert len(lists) >= 10
    for path, op in lists:
        for caller in ("B member", "B reader"):
            r = client.get(path, headers=callers[caller])
            if op.get("x-required-role") == "admin":
                assert r.status_code == 403, (caller, path, r.status_code)
                continue
            assert r.status_code == 200, (caller, path, r.json)
            leaked = [v for v in secret if v in r.get_data(as_text=True)]
            assert not leaked, (caller, path, leaked)
    # And A sees its own (the check above is not vacuous).
    assert ids["image"] in client.get("/v1/images", headers=callers["A member"]).get_data(
        as_text=True
    )
    assert ids["instance"] in client.get("/v1/events", headers=callers["A member"]).get_data(
        as_text=True
    )


def test_a_path_without_a_factory_fails_the_matrix(client, tenants, monkeypatch) -> None:
    """A new endpoint with an id is not silently skipped: the matrix names what to add."""
    monkeypatch.delitem(FACTORIES, "/v1/keypairs/{name}")
    with pytest.raises(
        AssertionError, match=r"/v1/keypairs/\{name\} has an id parameter but no resource factory"
    ):
        test_isolation_matrix_covers_every_path(client, tenants)
