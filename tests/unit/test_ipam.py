"""IP address management on a real database (both backends)."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from portal.core import ipam
from portal.core.errors import Conflict, Invalid
from portal.core.models import (
    Flavor,
    Image,
    Instance,
    InstanceVif,
    IPAllocation,
    Network,
    Subnet,
)
from portal.services import networks
from tenants.models import Project


@pytest.fixture
def make_instance(ctx) -> Callable[[], str]:
    """Instances to hang allocations on (ip_allocations.instance_id is a foreign key)."""
    with ctx.session() as s:
        project = Project(name="ipam")
        flavor = Flavor(name="f", vcpus=1, ram_mb=1, disk_gb=1)
        image = Image(name="i")
        s.add_all([project, flavor, image])
        s.flush()
        ids = (project.id, flavor.id, image.id)

    def make() -> str:
        with ctx.session() as s:
            inst = Instance(
                name="vm",
                project_id=ids[0],
                flavor_id=ids[1],
                image_id=ids[2],
                vcpus=1,
                ram_mb=1,
            )
            s.add(inst)
            s.flush()
            return inst.id

    return make


def tiny_network(ctx, *pools: tuple[str, str]) -> str:
    with ctx.session() as s:
        net = Network(name="tiny")
        for i, (start, end) in enumerate(pools):
            net.subnets.append(
                Subnet(
                    cidr=f"10.{i}.0.0/24",
                    allocation_pools=[{"start": start, "end": end}],
                    gateway_ip=None,
                )
            )
        s.add(net)
        s.flush()
        return net.id


def allocate(ctx, net_id: str, instance_id: str) -> str:
    with ctx.session() as s:
        (alloc,) = ipam.allocate(s, s.get_one(Network, net_id), instance_id)
        return alloc.address


def test_provider_network_hands_out_unique_addresses_lowest_first(ctx, make_instance) -> None:
    with ctx.session() as s:
        net_id = networks.ensure_provider(ctx, s).id
    got = [allocate(ctx, net_id, make_instance()) for _ in range(5)]
    assert got == ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"]
    assert len(set(got)) == len(got)
    subnet = ipaddress.ip_network(ctx.settings.provider_network_cidr)
    assert all(ipaddress.ip_address(a) in subnet for a in got)
    with ctx.session() as s:
        rows = s.scalars(select(IPAllocation)).all()
        assert sorted(r.address for r in rows) == sorted(got)
        assert all(r.network_id == net_id for r in rows)


def test_one_instance_can_hold_several_addresses(ctx, make_instance) -> None:
    net_id = tiny_network(ctx, ("10.0.0.10", "10.0.0.20"))
    inst = make_instance()
    a, b = allocate(ctx, net_id, inst), allocate(ctx, net_id, inst)
    assert a != b
    with ctx.session() as s:
        assert sorted(ipam.release(s, inst)) == sorted([a, b])


def test_released_addresses_are_reused(ctx, make_instance) -> None:
    net_id = tiny_network(ctx, ("10.0.0.10", "10.0.0.12"))
    first, second, third = make_instance(), make_instance(), make_instance()
    assert allocate(ctx, net_id, first) == "10.0.0.10"
    assert allocate(ctx, net_id, second) == "10.0.0.11"
    assert allocate(ctx, net_id, third) == "10.0.0.12"
    with ctx.session() as s:
        assert ipam.release(s, second) == ["10.0.0.11"]
    with ctx.session() as s:
        assert ipam.release(s, second) == []  # releasing twice is harmless
    assert allocate(ctx, net_id, make_instance()) == "10.0.0.11"


def test_exhaustion_raises_conflict_naming_the_network(ctx, make_instance) -> None:
    net_id = tiny_network(ctx, ("10.0.0.10", "10.0.0.11"))
    allocate(ctx, net_id, make_instance())
    allocate(ctx, net_id, make_instance())
    late = make_instance()
    with pytest.raises(Conflict, match="no free IP address left on network 'tiny'") as info:
        allocate(ctx, net_id, late)
    assert info.value.status == 409 and info.value.extra == {"network": net_id}
    with ctx.session() as s:
        assert s.scalars(select(IPAllocation).where(IPAllocation.instance_id == late)).all() == []


def test_a_full_subnet_spills_over_into_the_next(ctx, make_instance) -> None:
    net_id = tiny_network(ctx, ("10.0.0.10", "10.0.0.10"), ("10.1.0.5", "10.1.0.6"))
    got = [allocate(ctx, net_id, make_instance()) for _ in range(3)]
    assert got == ["10.0.0.10", "10.1.0.5", "10.1.0.6"]
    with pytest.raises(Conflict):
        allocate(ctx, net_id, make_instance())


def test_the_database_refuses_the_same_address_twice(ctx, make_instance) -> None:
    """The unique key, not the Python loop, is what guarantees single use under races."""
    net_id = tiny_network(ctx, ("10.0.0.10", "10.0.0.20"))
    a, b = make_instance(), make_instance()
    with ctx.session() as s:
        subnet_id = s.get_one(Network, net_id).subnets[0].id
    with ctx.session() as s:
        s.add(
            IPAllocation(subnet_id=subnet_id, network_id=net_id, address="10.0.0.10", instance_id=a)
        )
    with pytest.raises(IntegrityError), ctx.session() as s:
        s.add(
            IPAllocation(subnet_id=subnet_id, network_id=net_id, address="10.0.0.10", instance_id=b)
        )
        s.flush()


def test_purging_an_instance_row_cascades_to_its_addresses(ctx, make_instance) -> None:
    """ON DELETE CASCADE in the schema (the migration), checked with a Core DELETE."""
    net_id = tiny_network(ctx, ("10.0.0.10", "10.0.0.10"))
    inst = make_instance()
    allocate(ctx, net_id, inst)
    with ctx.session() as s:
        s.execute(delete(Instance).where(Instance.id == inst))
    assert allocate(ctx, net_id, make_instance()) == "10.0.0.10"


# -- generalised allocator: fixed IPs, IPv6, VIFs, many subnets, races --------------------------


def dual_network(ctx, gateway: str | None = "10.7.0.1") -> str:
    with ctx.session() as s:
        net = Network(name="dual", network_type="flat", physical_network="p-dual")
        net.subnets.append(
            Subnet(
                cidr="10.7.0.0/24",
                ip_version=4,
                gateway_ip=gateway,
                allocation_pools=[{"start": "10.7.0.10", "end": "10.7.0.12"}],
            )
        )
        net.subnets.append(
            Subnet(
                cidr="2001:db8:7::/64",
                ip_version=6,
                gateway_ip="2001:db8:7::1",
                allocation_pools=[{"start": "2001:db8:7::10", "end": "2001:db8:7::ffff"}],
            )
        )
        s.add(net)
        s.flush()
        return net.id


def test_a_network_with_an_ipv6_subnet_gives_both_versions(ctx, make_instance) -> None:
    net_id = dual_network(ctx)
    inst = make_instance()
    with ctx.session() as s:
        got = ipam.allocate(s, s.get_one(Network, net_id), inst)
        assert [(a.address, a.subnet.ip_version) for a in got] == [
            ("10.7.0.10", 4),
            ("2001:db8:7::10", 6),
        ]


@pytest.mark.parametrize(
    ("fixed", "error", "match"),
    [
        ("10.7.0.200", None, None),  # outside the pools but inside the CIDR: allowed
        ("10.8.0.1", Invalid, "in no subnet"),
        ("10.7.0.1", Invalid, "gateway"),
        ("10.7.0.0", Invalid, "network address"),
        ("10.7.0.255", Invalid, "broadcast"),
        ("2001:db8:7::1", Invalid, "gateway"),
    ],
)
def test_fixed_ips(ctx, make_instance, fixed, error, match) -> None:
    net_id = dual_network(ctx)
    inst = make_instance()
    with ctx.session() as s:
        net = s.get_one(Network, net_id)
        if error is None:
            got = ipam.allocate(s, net, inst, fixed_ip=fixed)
            assert got[0].address == fixed and len(got) == 2
            return
        with pytest.raises(error, match=match) as info:
            ipam.allocate(s, net, inst, fixed_ip=fixed)
        assert info.value.extra["errors"][0]["field"] == "fixed_ip"


def test_a_taken_fixed_ip_is_a_conflict_naming_the_field(ctx, make_instance) -> None:
    net_id = dual_network(ctx)
    first, second = make_instance(), make_instance()
    with ctx.session() as s:
        ipam.allocate(s, s.get_one(Network, net_id), first, fixed_ip="10.7.0.11")
    with ctx.session() as s, pytest.raises(Conflict, match="already in use") as info:
        ipam.allocate(s, s.get_one(Network, net_id), second, fixed_ip="10.7.0.11")
    assert info.value.extra["errors"] == [{"field": "fixed_ip", "message": info.value.detail}]
    # Automatic allocation skips it.
    third = make_instance()
    with ctx.session() as s:
        got = ipam.allocate(s, s.get_one(Network, net_id), second)
        assert got[0].address == "10.7.0.10"
        assert ipam.allocate(s, s.get_one(Network, net_id), third)[0].address == "10.7.0.12"


def test_a_network_without_ipv4_is_refused(ctx, make_instance) -> None:
    inst = make_instance()
    with ctx.session() as s:
        net = Network(name="v6only", network_type="flat", physical_network="p6")
        net.subnets.append(
            Subnet(
                cidr="2001:db8:9::/64",
                ip_version=6,
                allocation_pools=[{"start": "2001:db8:9::2", "end": "2001:db8:9::9"}],
            )
        )
        s.add(net)
        s.flush()
        with pytest.raises(Conflict, match="no IPv4 subnet"):
            ipam.allocate(s, net, inst)


def test_allocation_walks_many_subnets_and_pools(ctx, make_instance) -> None:
    with ctx.session() as s:
        net = Network(name="many", network_type="flat", physical_network="p-many")
        for i in range(6):
            net.subnets.append(
                Subnet(
                    cidr=f"10.{20 + i}.0.0/24",
                    ip_version=4,
                    gateway_ip=f"10.{20 + i}.0.1",
                    allocation_pools=[
                        {"start": f"10.{20 + i}.0.5", "end": f"10.{20 + i}.0.5"},
                        {"start": f"10.{20 + i}.0.9", "end": f"10.{20 + i}.0.9"},
                    ],
                )
            )
        s.add(net)
        s.flush()
        net_id = net.id
    got = [allocate(ctx, net_id, make_instance()) for _ in range(12)]
    assert got == [f"10.{20 + i}.0.{h}" for i in range(6) for h in (5, 9)]
    with pytest.raises(Conflict, match="no free IP address left on network 'many'"):
        allocate(ctx, net_id, make_instance())


def test_allocate_vifs_fills_what_each_vif_lacks(ctx, make_instance) -> None:
    net_id = dual_network(ctx)
    inst = make_instance()
    with ctx.session() as s:
        vif = InstanceVif(instance_id=inst, network_id=net_id, index=0, fixed_ip="10.7.0.12")
        s.add(vif)
        s.flush()
        ipam.allocate(s, s.get_one(Network, net_id), inst, "10.7.0.12", vif.id)
    with ctx.session() as s:
        held = ipam.allocate_vifs(s, inst)
        assert [a.address for a in held] == ["10.7.0.12", "2001:db8:7::10"]
        assert {a.vif_id for a in held} == {vif.id}
    with ctx.session() as s:  # again: nothing is missing, nothing new
        assert [a.address for a in ipam.allocate_vifs(s, inst)] == ["10.7.0.12", "2001:db8:7::10"]


def test_concurrent_allocations_never_share_an_address(ctx, make_instance) -> None:
    """20 threads, each its own transaction, allocate at once: 20 distinct addresses."""
    net_id = tiny_network(ctx, ("10.0.0.10", "10.0.0.60"))
    instances = [make_instance() for _ in range(20)]
    barrier = threading.Barrier(len(instances))
    got: list[str] = []
    errors: list[BaseException] = []

    def run(inst: str) -> None:
        try:
            barrier.wait()
            got.append(allocate(ctx, net_id, inst))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got, key=ipaddress.ip_address) == [f"10.0.0.{i}" for i in range(10, 30)]
