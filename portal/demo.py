"""Demo data: an admin and a tenant with tokens, a provider network, fake nodes, a flavor
and an image, so a new user can boot a server right after ``bms up``."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from sqlalchemy import select

from portal.core.models import Node
from portal.services import flavors, images, networks, nodes
from portal.services import identity as ids
from portal.services.context import Context
from tenants.models import Project
from tenants.roles import ADMIN, MEMBER

DEMO_IMAGE = b"BMS demo whole-disk image\n" * 4096


@dataclass
class DemoTokens:
    admin: str
    tenant: str
    flavor: str
    image: str


def seed(ctx: Context, node_count: int = 4) -> DemoTokens | None:
    """Idempotent: returns None if the demo was seeded already."""
    with ctx.session() as s:
        if s.scalar(select(Project).where(Project.name == "admin")) is not None:
            return None
        networks.ensure_provider(ctx, s)
        admin_p = ids.create_project(ctx, s, "admin", "operators")
        admin = ids.create_user(s, "admin", admin_p, ADMIN)
        _, admin_token = ids.create_token(s, admin, "demo admin token", None)
        tenant_p = ids.create_project(ctx, s, "demo", "a demo tenant")
        tenant = ids.create_user(s, "alice", tenant_p, MEMBER)
        _, tenant_token = ids.create_token(s, tenant, "demo tenant token", None)
        actor = ids.SYSTEM
        flavor = flavors.create(
            s,
            {
                "name": "baremetal.small",
                "vcpus": 8,
                "ram_mb": 16384,
                "disk_gb": 100,
                "cpu_arch": "x86_64",
                "resource_class": "baremetal",
                "extra_specs": {"capabilities:boot_mode": "uefi"},
                "is_public": True,
            },
            actor,
        )
        image = images.create(
            s,
            {
                "name": "demo-linux",
                "disk_format": "raw",
                "visibility": "public",
                "expected_sha256": hashlib.sha256(DEMO_IMAGE).hexdigest(),
            },
            actor,
        )
        for i in range(node_count):
            node = nodes.create_node(
                ctx,
                s,
                {
                    "name": f"demo-node-{i}",
                    "driver": "fake",
                    "resource_class": "baremetal",
                    "driver_info": {"fake_delay": 0.2, "bmc_password": "demo-secret"},
                    "properties": {
                        "cpus": 16,
                        "memory_mb": 65536,
                        "local_gb": 480,
                        "cpu_arch": "x86_64",
                    },
                    "capabilities": {"boot_mode": "uefi"},
                    "traits": ["CUSTOM_DEMO"],
                    "ports": [
                        {"address": f"52:54:00:00:00:{i:02x}", "physical_network": "physnet1"}
                    ],
                },
                actor,
            )
            nodes.provision(ctx, s, node, "manage", actor)
        tokens = DemoTokens(admin_token, tenant_token, flavor.id, image.id)
    images.upload(ctx, tokens.image, io.BytesIO(DEMO_IMAGE), ids.SYSTEM)
    return tokens


def provide_manageable(ctx: Context) -> int:
    """Move every manageable demo node on to cleaning → available."""
    count = 0
    with ctx.session() as s:
        for node in s.scalars(
            select(Node).where(Node.provision_state == "manageable", Node.name.like("demo-node-%"))
        ):
            nodes.provision(ctx, s, node, "provide", ids.SYSTEM)
            count += 1
    return count
