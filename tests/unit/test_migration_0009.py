"""Migration 0009 upgrades a 0008 database with data in it, on SQLite and PostgreSQL: the
provider network, its subnet and every allocation survive; live instances get their VIFs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, text

from portal import migrate
from tests.conftest import PG_DEFAULT

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
        return
    base = os.environ.get("BMS_TEST_POSTGRES_URL", PG_DEFAULT).rpartition("/")[0]
    name = f"bms_mig0009_{os.getpid()}"
    try:
        admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server
        if os.environ.get("BMS_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _seed_0008(url: str) -> None:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    t = meta.tables
    common = {"created_at": NOW}
    with engine.begin() as conn:
        conn.execute(
            t["projects"].insert(), {"id": "p1", "name": "alpha", "enabled": True, **common}
        )
        conn.execute(
            t["quotas"].insert(),
            {
                "project_id": "p1",
                "instances": 10,
                "vcpus": 100,
                "ram_mb": 10**6,
                "instances_used": 3,
                "vcpus_used": 3,
                "ram_mb_used": 3,
            },
        )
        conn.execute(
            t["flavors"].insert(),
            {
                "id": "f1",
                "name": "f",
                "vcpus": 1,
                "ram_mb": 1,
                "disk_gb": 1,
                "resource_class": "baremetal",
                "extra_specs": {},
                "is_public": True,
                "disabled": False,
                **common,
            },
        )
        conn.execute(
            t["images"].insert(),
            {
                "id": "i1",
                "name": "img",
                "disk_format": "raw",
                "container_format": "bare",
                "min_disk": 0,
                "min_ram": 0,
                "visibility": "public",
                "status": "active",
                "protected": False,
                **common,
            },
        )
        conn.execute(
            t["networks"].insert(),
            {
                "id": "net-p",
                "name": "provider",
                "network_type": "flat",
                "physical_network": "physnet1",
                "shared": True,
                **common,
            },
        )
        conn.execute(
            t["subnets"].insert(),
            {
                "id": "sub-p",
                "network_id": "net-p",
                "cidr": "192.0.2.0/24",
                "gateway_ip": "192.0.2.1",
                "pool_start": "192.0.2.10",
                "pool_end": "192.0.2.250",
                **common,
            },
        )
        conn.execute(
            t["nodes"].insert(),
            {
                "id": "n1",
                "resource_class": "baremetal",
                "driver": "fake",
                "driver_info": {},
                "driver_internal_info": {},
                "properties": {},
                "capabilities": {},
                "traits": [],
                "provision_state": "active",
                "maintenance": False,
                "recent_failures": 0,
                **common,
            },
        )
        conn.execute(
            t["ports"].insert(),
            {
                "id": "port1",
                "node_id": "n1",
                "address": "52:54:00:00:00:01",
                "pxe_enabled": True,
                **common,
            },
        )
        for inst, status, requested in (
            ("active-1", "ACTIVE", []),  # got the provider network by default
            ("active-2", "ACTIVE", ["net-p"]),
            ("build-1", "BUILD", []),  # not claimed yet: no address
            ("gone-1", "DELETED", []),
        ):
            conn.execute(
                t["instances"].insert(),
                {
                    "id": inst,
                    "name": inst,
                    "project_id": "p1",
                    "flavor_id": "f1",
                    "image_id": "i1",
                    "status": status,
                    "progress": 0,
                    "vcpus": 1,
                    "ram_mb": 1,
                    "ssh_keys": [],
                    "requested_networks": requested,
                    **common,
                },
            )
        for i, inst in enumerate(("active-1", "active-2")):
            conn.execute(
                t["ip_allocations"].insert(),
                {
                    "id": f"a{i}",
                    "subnet_id": "sub-p",
                    "network_id": "net-p",
                    "address": f"192.0.2.{10 + i}",
                    "instance_id": inst,
                    **common,
                },
            )
    engine.dispose()


def test_upgrade_keeps_the_provider_network_and_allocations(empty_db: str) -> None:
    migrate.upgrade(empty_db, "0008")
    _seed_0008(empty_db)
    migrate.upgrade(empty_db, "0009_tenant_networks")
    assert migrate.current(empty_db) == "0009_tenant_networks"
    engine = create_engine(empty_db)
    with engine.connect() as conn:
        net = conn.execute(
            text(
                "SELECT name, network_type, physical_network, segmentation_id, shared FROM networks"
            )
        ).one()
        assert tuple(net) == ("provider", "flat", "physnet1", None, True)
        sub = conn.execute(
            text("SELECT ip_version, cidr, gateway_ip, allocation_pools, project_id FROM subnets")
        ).one()
        pools = sub[3] if not isinstance(sub[3], str) else json.loads(sub[3])
        assert (sub[0], sub[1], sub[2], sub[4]) == (4, "192.0.2.0/24", "192.0.2.1", None)
        assert pools == [{"start": "192.0.2.10", "end": "192.0.2.250"}]
        vifs = conn.execute(
            text(
                'SELECT instance_id, network_id, "index", id FROM instance_vifs ORDER BY instance_id'
            )
        ).all()
        assert [(v[0], v[1], v[2]) for v in vifs] == [
            ("active-1", "net-p", 0),
            ("active-2", "net-p", 0),
            ("build-1", "net-p", 0),
        ]
        allocs = conn.execute(
            text("SELECT instance_id, address, vif_id FROM ip_allocations ORDER BY address")
        ).all()
        by_inst = {v[0]: v[3] for v in vifs}
        assert [(a[0], a[1]) for a in allocs] == [
            ("active-1", "192.0.2.10"),
            ("active-2", "192.0.2.11"),
        ]
        assert all(a[2] == by_inst[a[0]] for a in allocs)
        # The batch rebuilds did not cascade into child tables (foreign keys off for them).
        assert conn.execute(text("SELECT count(*) FROM ports")).scalar() == 1
        quota = conn.execute(
            text("SELECT instances_used, networks, networks_used, subnets_used FROM quotas")
        ).one()
        assert tuple(quota) == (3, 10, 0, 0)
    engine.dispose()
    # And back down, and up again.
    migrate.downgrade(empty_db, "0008")
    engine = create_engine(empty_db)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT pool_start, pool_end FROM subnets WHERE id = 'sub-p'")
        ).one()
        assert tuple(row) == ("192.0.2.10", "192.0.2.250")
        assert conn.execute(text("SELECT count(*) FROM ip_allocations")).scalar() == 2
    engine.dispose()
    migrate.upgrade(empty_db, "head")


def test_batch_rebuilds_never_cascade_into_child_tables(empty_db: str) -> None:
    """0008 rebuilds ``nodes`` on SQLite: with foreign keys enforced during the migration,
    its DROP TABLE deleted every port (ON DELETE CASCADE). migrations/env.py turns them off
    for the migration and checks them before the commit instead."""
    migrate.upgrade(empty_db, "0007")
    engine = create_engine(empty_db)
    meta = MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        conn.execute(
            meta.tables["nodes"].insert(),
            {
                "id": "n1",
                "resource_class": "baremetal",
                "driver": "fake",
                "driver_info": {},
                "driver_internal_info": {},
                "properties": {},
                "capabilities": {},
                "traits": [],
                "provision_state": "available",
                "maintenance": False,
                "recent_failures": 0,
                "created_at": NOW,
            },
        )
        conn.execute(
            meta.tables["ports"].insert(),
            {
                "id": "port1",
                "node_id": "n1",
                "address": "52:54:00:00:00:01",
                "pxe_enabled": True,
                "created_at": NOW,
            },
        )
    engine.dispose()
    migrate.upgrade(empty_db, "head")
    engine = create_engine(empty_db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ports")).scalar() == 1
    engine.dispose()
