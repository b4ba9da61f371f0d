"""End to end through HTTP: gunicorn serving the API, real `bms worker` processes on Redis.

Admin enrolls nodes → manage → provide → available; a tenant uploads an image, boots a
server, waits for ACTIVE, deletes it; the node is back in the pool; events are in order.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import free_port as _free_port
from tests.helpers import node_body, seed_admin_and_tenant, stop_processes
from tests.helpers import wait_for as _wait

pytestmark = pytest.mark.e2e


class Stack:
    def __init__(self, base: str, admin: str, tenant: str, project: str) -> None:
        self.base, self.project = base, project
        self.http = requests.Session()
        self.admin = {"X-Auth-Token": admin}
        self.tenant = {"X-Auth-Token": tenant}

    def call(self, method: str, path: str, who: dict[str, str], **kw: Any) -> requests.Response:
        return self.http.request(
            method, self.base + path, headers={**who, **kw.pop("headers", {})}, timeout=30, **kw
        )


WORKER_ARGV = (sys.executable, "-m", "portal.cli", "worker", "--no-reconcile", "--no-power-sync")


def _spawn_workers(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` workers: the first runs jobs inline (the default), every second one forks
    a work horse per job, so races mix both worker modes."""
    return [
        subprocess.Popen(
            [*WORKER_ARGV, "--mode", "fork" if i % 2 else "inline"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]


@pytest.fixture
def stack(ctx: Any, request: pytest.FixtureRequest) -> Iterator[Stack]:
    workers = getattr(request, "param", 1)
    with ctx.session() as s:
        admin, alice, pa = seed_admin_and_tenant(ctx, s)
    port = _free_port()
    env = {**os.environ, "BMS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--no-control-socket",
            "wsgi:app",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [api, *_spawn_workers(workers)]
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(base + "/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        _wait(up, 30, "gunicorn")
        yield Stack(base, admin, alice, pa.id)
    finally:
        stop_processes(procs, grace=10)


def _enroll_available(st: Stack, count: int) -> list[str]:
    ids = []
    for i in range(count):
        r = st.call("POST", "/v1/nodes", st.admin, json=node_body(i))
        assert r.status_code == 201, r.text
        ids.append(r.json()["uuid"])
        assert (
            st.call(
                "PUT", f"/v1/nodes/{ids[-1]}/states/provision", st.admin, json={"target": "manage"}
            ).status_code
            == 202
        )

    def in_state(state: str) -> bool:
        nodes = st.call("GET", "/v1/nodes?limit=1000", st.admin).json()["nodes"]
        return all(n["provision_state"] == state for n in nodes if n["uuid"] in ids)

    _wait(lambda: in_state("manageable"), 60, "manageable")
    for nid in ids:
        assert (
            st.call(
                "PUT", f"/v1/nodes/{nid}/states/provision", st.admin, json={"target": "provide"}
            ).status_code
            == 202
        )
    _wait(lambda: in_state("available"), 60, "available")
    return ids


def _flavor(st: Stack) -> dict[str, Any]:
    r = st.call(
        "POST",
        "/v1/flavors",
        st.admin,
        json={"name": "bm.small", "vcpus": 4, "ram_mb": 8192, "disk_gb": 50},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _image(st: Stack) -> str:
    data = os.urandom(3 * 1024 * 1024)
    r = st.call(
        "POST",
        "/v1/images",
        st.tenant,
        json={"name": "my-os", "disk_format": "raw", "sha256": hashlib.sha256(data).hexdigest()},
    )
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = st.call(
        "PUT",
        f"/v1/images/{image_id}/file",
        st.tenant,
        data=iter([data[: 1 << 20], data[1 << 20 :]]),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    return image_id


def test_lifecycle_through_http(stack: Stack) -> None:
    st = stack
    (node_id,) = _enroll_available(st, 1)
    flavor = _flavor(st)
    image_id = _image(st)
    key = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    assert (
        st.call(
            "POST", "/v1/keypairs", st.tenant, json={"name": "laptop", "public_key": key}
        ).status_code
        == 201
    )
    r = st.call(
        "POST",
        "/v1/instances",
        st.tenant,
        json={
            "name": "web-1",
            "flavor": flavor["name"],
            "image": image_id,
            "key_names": ["laptop"],
        },
    )
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    inst = _wait(
        lambda: (lambda j: j if j["status"] in ("ACTIVE", "ERROR") else None)(
            st.call("GET", location, st.tenant).json()
        ),
        60,
        "ACTIVE",
    )
    assert inst["status"] == "ACTIVE", inst
    assert inst["addresses"] and inst["key_names"] == ["laptop"]

    assert st.call("DELETE", location, st.tenant).status_code == 202
    _wait(lambda: st.call("GET", location, st.tenant).json()["status"] == "DELETED", 60, "DELETED")
    _wait(
        lambda: (
            st.call("GET", f"/v1/nodes/{node_id}", st.admin).json()["provision_state"]
            == "available"
        ),
        60,
        "node available",
    )

    events = st.call("GET", f"/v1/events?resource_id={inst['id']}", st.tenant).json()["events"]
    statuses = [e["payload"]["status"] for e in events if e["type"] == "instance.status"]
    assert statuses == ["ACTIVE", "DELETING", "DELETED"]
    assert events[0]["type"] == "instance.created"
    node_events = st.call(
        "GET", f"/v1/events?resource_id={node_id}&type=node.provision_state", st.admin
    ).json()["events"]
    assert [e["payload"]["state"] for e in node_events] == [
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
    ids = [e["id"] for e in node_events]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("stack", "nodes", "creates"),
    [(4, 10, 20), (4, 100, 200)],
    indirect=["stack"],
    ids=["20-for-10", "200-for-100"],
)
def test_creates_race_for_fewer_nodes(stack: Stack, nodes: int, creates: int) -> None:
    """Twice as many creates as nodes, 4 workers (inline and forking): every node is used
    once, every other create fails with no-valid-host, none fails while a node is free."""
    st = stack
    _enroll_available(st, nodes)
    flavor = _flavor(st)
    image_id = _image(st)
    assert (
        st.call(
            "PUT",
            f"/v1/projects/{st.project}/quota",
            st.admin,
            json={"instances": 2 * creates, "vcpus": -1, "ram_mb": -1},
        ).status_code
        == 200
    )
    ids = []
    for i in range(creates):
        r = st.call(
            "POST",
            "/v1/instances",
            st.tenant,
            json={"name": f"race-{i}", "flavor": flavor["id"], "image": image_id},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])

    def settled() -> list[dict[str, Any]] | None:
        rows = [st.call("GET", f"/v1/instances/{i}", st.admin).json() for i in ids]
        return rows if all(r["status"] in ("ACTIVE", "ERROR") for r in rows) else None

    rows = _wait(settled, 60 + creates, "all instances settled")
    status = Counter(r["status"] for r in rows)
    # exactly as many ACTIVE as nodes: no false no-valid-host while a node was free
    assert status == {"ACTIVE": nodes, "ERROR": creates - nodes}
    errors = [r for r in rows if r["status"] == "ERROR"]
    assert all(r["fault"]["code"] == "no_valid_host" for r in errors)
    used = [r["node_id"] for r in rows if r["status"] == "ACTIVE"]
    assert len(set(used)) == nodes  # no node claimed twice
    deploys: Counter[str] = Counter()
    url: str | None = "/v1/events?type=node.provision_state&limit=1000"
    while url:
        page = st.call("GET", url, st.admin).json()
        deploys.update(
            e["resource_id"] for e in page["events"] if e["payload"]["event"] == "deploy"
        )
        url = page["next"]
    assert set(deploys.values()) == {1} and len(deploys) == nodes


@pytest.mark.parametrize("stack", [4], indirect=True)
def test_anti_affinity_holds_when_members_are_scheduled_at_once(stack: Stack) -> None:
    """6 members of a rack-level anti-affinity group, created together, 4 workers, 8 nodes
    in 4 racks: 4 ACTIVE in 4 different racks, the other 2 fail with the group's reason."""
    st = stack
    node_ids = _enroll_available(st, 8)
    for r in range(4):
        resp = st.call(
            "POST",
            "/v1/aggregates",
            st.admin,
            json={
                "name": f"rack-{r}",
                "metadata": {"rack": f"r{r}"},
                "nodes": node_ids[2 * r : 2 * r + 2],
            },
        )
        assert resp.status_code == 201, resp.text
    rack = {n: i // 2 for i, n in enumerate(node_ids)}
    group = st.call(
        "POST",
        "/v1/server-groups",
        st.tenant,
        json={"name": "db", "policy": "anti-affinity", "scope": "rack"},
    ).json()
    flavor, image_id = _flavor(st), _image(st)
    ids = [
        st.call(
            "POST",
            "/v1/instances",
            st.tenant,
            json={
                "name": f"db-{i}",
                "flavor": flavor["id"],
                "image": image_id,
                "server_group": group["id"],
            },
        ).json()["id"]
        for i in range(6)
    ]

    def settled() -> list[dict[str, Any]] | None:
        rows = [st.call("GET", f"/v1/instances/{i}", st.admin).json() for i in ids]
        return rows if all(r["status"] in ("ACTIVE", "ERROR") for r in rows) else None

    rows = _wait(settled, 120, "all members settled")
    active = [r for r in rows if r["status"] == "ACTIVE"]
    assert len(active) == 4
    assert sorted(rack[r["node_id"]] for r in active) == [0, 1, 2, 3]
    for r in rows:
        if r["status"] == "ERROR":
            assert "server group anti-affinity (rack)" in r["fault"]["message"], r["fault"]
