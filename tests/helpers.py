"""Seeding helpers shared by API and integration tests (through the services, as HIL)."""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from portal.services import flavors, identity, images, networks, nodes
from portal.services.context import Context
from tenants.roles import ADMIN, MEMBER, READER

IMAGE_BYTES = b"\x00bms test image\n" * 1000


@dataclass
class World:
    admin: dict[str, str]
    alice: dict[str, str]
    bob: dict[str, str]
    reader: dict[str, str]
    alice_project: str
    bob_project: str
    flavor: str
    image: str


def headers(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token}


def seed_admin_and_tenant(ctx: Context, s: Any) -> tuple[str, str, Any]:
    """Provider network, an admin (project ops) and a member alice (project alpha):
    returns the admin's token, alice's token and alice's project."""
    networks.ensure_provider(ctx, s)
    ops = identity.create_project(ctx, s, "ops", None)
    _, admin = identity.create_token(s, identity.create_user(s, "root", ops, ADMIN), None, None)
    pa = identity.create_project(ctx, s, "alpha", None)
    _, alice = identity.create_token(s, identity.create_user(s, "alice", pa, MEMBER), None, None)
    return admin, alice, pa


def seed_world(ctx: Context) -> World:
    with ctx.session() as s:
        admin, alice, pa = seed_admin_and_tenant(ctx, s)
        _, reader = identity.create_token(
            s, identity.create_user(s, "rita", pa, READER), None, None
        )
        pb = identity.create_project(ctx, s, "beta", None)
        _, bob = identity.create_token(s, identity.create_user(s, "bob", pb, MEMBER), None, None)
        flavor = flavors.create(
            s,
            {
                "name": "bm.small",
                "vcpus": 4,
                "ram_mb": 8192,
                "disk_gb": 50,
                "cpu_arch": "x86_64",
                "resource_class": "baremetal",
                "extra_specs": {},
            },
            identity.SYSTEM,
        )
        image = images.create(
            s,
            {
                "name": "img",
                "visibility": "public",
                "expected_sha256": hashlib.sha256(IMAGE_BYTES).hexdigest(),
            },
            identity.SYSTEM,
        )
        world = World(
            headers(admin),
            headers(alice),
            headers(bob),
            headers(reader),
            pa.id,
            pb.id,
            flavor.id,
            image.id,
        )
    images.upload(ctx, world.image, io.BytesIO(IMAGE_BYTES), identity.SYSTEM)
    return world


def node_body(i: int, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"node-{i}",
        "driver": "fake",
        "resource_class": "baremetal",
        "driver_info": {
            "bmc_address": f"10.0.0.{i}",
            "bmc_username": "admin",
            "bmc_password": "s3cret-pw",
        },
        "properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100, "cpu_arch": "x86_64"},
        "ports": [{"address": f"52:54:00:12:{i // 256:02x}:{i % 256:02x}"}],
    }
    body.update(over)
    return body


def make_available(ctx: Context, count: int, run_jobs: Any, **over: Any) -> list[str]:
    """Enroll ``count`` fake nodes and take them to ``available`` through real jobs."""
    ids = []
    with ctx.session() as s:
        for i in range(count):
            node = nodes.create_node(ctx, s, node_body(i, **over), identity.SYSTEM)
            nodes.provision(ctx, s, node, "manage", identity.SYSTEM)
            ids.append(node.id)
    run_jobs()
    with ctx.session() as s:
        from portal.core.models import Node

        for nid in ids:
            nodes.provision(ctx, s, s.get_one(Node, nid), "provide", identity.SYSTEM)
    run_jobs()
    return ids


def stop_processes(procs: Iterable[subprocess.Popen[Any]], grace: float) -> None:
    """Terminate every process, then kill whichever has not exited after ``grace`` s."""
    procs = list(procs)
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something true (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
