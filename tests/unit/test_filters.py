"""Scheduler filters and weighers on plain ``Node`` objects (no database)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.core.models import Flavor, Node
from portal.core.states import ACTIVE, AVAILABLE, MANAGEABLE
from scheduler import filters as flt
from scheduler import weighers
from scheduler.filters import FILTERS, Filter
from scheduler.locations import Location
from scheduler.request import GroupRule, PlaceRule, RequestSpec
from scheduler.weighers import waste

PROJECT = "proj-a"


def node(id: str = "n1", **over: Any) -> Node:
    fields: dict[str, Any] = {
        "id": id,
        "provision_state": AVAILABLE,
        "maintenance": False,
        "reservation": None,
        "instance_id": None,
        "owner": None,
        "resource_class": "baremetal",
        "properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100, "cpu_arch": "x86_64"},
        "capabilities": {},
        "traits": [],
        "recent_failures": 0,
        "power_state": "power off",
    }
    fields.update(over)
    return Node(**fields)


def first_failure(
    n: Node, want: RequestSpec, filters: tuple[Filter, ...] = FILTERS, loc: Location | None = None
) -> str | None:
    return flt.first_failure(n, loc or Location(n.id), want, filters)


def passes_all(
    n: Node, want: RequestSpec, filters: tuple[Filter, ...] = FILTERS, loc: Location | None = None
) -> bool:
    return first_failure(n, want, filters, loc) is None


DEFAULT_WEIGHTS = {"best_fit": 1.0, "recent_failures": 1.0}


def rank(pool: list[Node], want: RequestSpec, mult: dict[str, float] | None = None) -> list[Node]:
    ranked = weighers.rank(
        [(n, Location(n.id)) for n in pool],
        want,
        DEFAULT_WEIGHTS if mult is None else mult,
        weighers.Context(used_per_rack={}),
    )
    return [n for n, _ in ranked]


def spec(**over: Any) -> RequestSpec:
    fields: dict[str, Any] = {
        "project_id": PROJECT,
        "resource_class": "baremetal",
        "vcpus": 4,
        "ram_mb": 8192,
        "disk_gb": 50,
        "cpu_arch": "x86_64",
    }
    fields.update(over)
    return RequestSpec(**fields)


def test_a_matching_node_passes_every_filter() -> None:
    assert passes_all(node(), spec())
    assert first_failure(node(), spec()) is None


def test_filters_are_checked_in_the_documented_order() -> None:
    assert [f.name for f in FILTERS] == [
        "provision_state",
        "maintenance",
        "reserved",
        "power_state",
        "tenancy",
        "aggregate_tenancy",
        "resource_class",
        "cpus",
        "ram",
        "disk",
        "cpu_arch",
        "capabilities",
        "traits",
        "availability_zone",
        "server_group",
        "hints",
        "node_name",
    ]


@pytest.mark.parametrize(
    ("over", "failure"),
    [
        ({"provision_state": MANAGEABLE}, "provision_state"),
        ({"provision_state": ACTIVE}, "provision_state"),
        ({"maintenance": True}, "maintenance"),
        ({"reservation": "worker-1"}, "reserved"),
        ({"instance_id": "some-instance"}, "reserved"),
        ({"owner": "proj-b"}, "tenancy"),
        ({"power_state": None}, "power_state"),
        ({"power_state": "error"}, "power_state"),
        ({"resource_class": "gpu"}, "resource_class"),
        ({"properties": {"cpus": 2, "memory_mb": 16384, "local_gb": 100}}, "cpus"),
        ({"properties": {"cpus": 8, "memory_mb": 4096, "local_gb": 100}}, "ram"),
        ({"properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 10}}, "disk"),
        (
            {"properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100, "cpu_arch": "aarch64"}},
            "cpu_arch",
        ),
        ({"properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100}}, "cpu_arch"),
    ],
)
def test_each_filter_rejects_what_it_should(over: dict[str, Any], failure: str) -> None:
    n = node(**over)
    assert not passes_all(n, spec())
    assert first_failure(n, spec()) == failure


def test_resources_are_greater_or_equal_not_strictly_greater() -> None:
    exact = node(properties={"cpus": 4, "memory_mb": 8192, "local_gb": 50, "cpu_arch": "x86_64"})
    assert passes_all(exact, spec())
    one_short = node(
        properties={"cpus": 4, "memory_mb": 8191, "local_gb": 50, "cpu_arch": "x86_64"}
    )
    assert first_failure(one_short, spec()) == "ram"


@pytest.mark.parametrize(
    ("properties", "failure"),
    [
        (None, "cpus"),
        ({}, "cpus"),
        ({"cpus": "lots", "memory_mb": 16384, "local_gb": 100}, "cpus"),
        ({"cpus": None, "memory_mb": 16384, "local_gb": 100}, "cpus"),
        ({"cpus": [8], "memory_mb": 16384, "local_gb": 100}, "cpus"),
        ({"cpus": 8, "local_gb": 100}, "ram"),
        ({"cpus": 8, "memory_mb": "16 GiB", "local_gb": 100}, "ram"),
        ({"cpus": 8, "memory_mb": 16384}, "disk"),
        ({"cpus": 8, "memory_mb": 16384, "local_gb": "1e3"}, "disk"),
    ],
)
def test_missing_or_non_numeric_properties_fail_closed(
    properties: dict[str, Any] | None, failure: str
) -> None:
    assert first_failure(node(properties=properties), spec(cpu_arch=None)) == failure


def test_numeric_strings_count_as_numbers() -> None:
    # CSV imports and hand-edited JSON produce strings; they are read as integers.
    n = node(
        properties={"cpus": "8", "memory_mb": "16384", "local_gb": "100", "cpu_arch": "x86_64"}
    )
    assert passes_all(n, spec())


def test_cpu_arch_is_ignored_when_the_flavor_does_not_ask() -> None:
    n = node(properties={"cpus": 8, "memory_mb": 16384, "local_gb": 100, "cpu_arch": "aarch64"})
    assert passes_all(n, spec(cpu_arch=None))
    assert first_failure(n, spec(cpu_arch="x86_64")) == "cpu_arch"


def test_capabilities_must_match_and_the_failing_key_is_named() -> None:
    want = spec(capabilities={"boot_mode": "uefi", "secure_boot": "true"})
    assert passes_all(node(capabilities={"boot_mode": "uefi", "secure_boot": "true"}), want)
    assert passes_all(
        node(capabilities={"boot_mode": "uefi", "secure_boot": "true", "raid": "1"}), want
    )
    assert first_failure(node(capabilities={"boot_mode": "bios", "secure_boot": "true"}), want) == (
        "capability boot_mode"
    )
    assert first_failure(node(capabilities={"boot_mode": "uefi"}), want) == "capability secure_boot"
    assert first_failure(node(capabilities=None), want) == "capability boot_mode"
    # Non-string values on the node are compared by their string form.
    assert passes_all(node(capabilities={"disks": 4}), spec(capabilities={"disks": "4"}))


def test_required_and_forbidden_traits() -> None:
    want = spec(
        required_traits=frozenset({"CUSTOM_RAID", "HW_NIC_SRIOV"}),
        forbidden_traits=frozenset({"CUSTOM_GPU"}),
    )
    assert passes_all(node(traits=["CUSTOM_RAID", "HW_NIC_SRIOV", "CUSTOM_FAST"]), want)
    assert first_failure(node(traits=["CUSTOM_RAID"]), want) == "trait required"
    assert first_failure(node(traits=None), want) == "trait required"
    assert first_failure(node(traits=["CUSTOM_RAID", "HW_NIC_SRIOV", "CUSTOM_GPU"]), want) == (
        "trait forbidden"
    )
    only_forbidden = spec(forbidden_traits=frozenset({"CUSTOM_GPU"}))
    assert passes_all(node(traits=[]), only_forbidden)
    assert not passes_all(node(traits=["CUSTOM_GPU"]), only_forbidden)


def test_tenancy_shared_nodes_serve_everyone_dedicated_nodes_their_owner_only() -> None:
    assert passes_all(node(owner=None), spec(project_id="proj-a"))
    assert passes_all(node(owner="proj-a"), spec(project_id="proj-a"))
    assert first_failure(node(owner="proj-a"), spec(project_id="proj-b")) == "tenancy"


def test_a_node_is_charged_to_the_first_filter_it_fails() -> None:
    n = node(
        maintenance=True,
        owner="proj-b",
        resource_class="gpu",
        properties={"cpus": 1, "memory_mb": 1, "local_gb": 1},
    )
    assert first_failure(n, spec()) == "maintenance"
    n.maintenance = False
    assert first_failure(n, spec()) == "tenancy"
    n.owner = None
    assert first_failure(n, spec()) == "resource_class"
    n.resource_class = "baremetal"
    assert first_failure(n, spec()) == "cpus"


def test_custom_filter_tuple_is_honoured() -> None:
    only_state = tuple(f for f in FILTERS if f.name == "provision_state")
    skinny = node(properties={})
    assert passes_all(skinny, spec(), only_state)
    assert first_failure(skinny, spec(), only_state) is None
    assert first_failure(skinny, spec()) == "cpus"


def test_request_spec_from_flavor_extra_specs() -> None:
    flavor = Flavor(
        name="bm.gpu",
        vcpus=16,
        ram_mb=65536,
        disk_gb=200,
        cpu_arch="x86_64",
        resource_class="gpu",
        extra_specs={
            "capabilities:boot_mode": "uefi",
            "trait:CUSTOM_GPU": "required",
            "trait:CUSTOM_SLOW": "forbidden",
        },
    )
    rs = RequestSpec.from_flavor(flavor, "proj-a")
    assert rs == RequestSpec(
        project_id="proj-a",
        resource_class="gpu",
        vcpus=16,
        ram_mb=65536,
        disk_gb=200,
        cpu_arch="x86_64",
        capabilities={"boot_mode": "uefi"},
        required_traits=frozenset({"CUSTOM_GPU"}),
        forbidden_traits=frozenset({"CUSTOM_SLOW"}),
    )


# -- ranking -------------------------------------------------------------------------------


def sized(id: str, cpus: int, ram: int, disk: int, failures: int = 0) -> Node:
    return node(
        id,
        properties={"cpus": cpus, "memory_mb": ram, "local_gb": disk, "cpu_arch": "x86_64"},
        recent_failures=failures,
    )


def test_rank_puts_the_tightest_fit_first() -> None:
    big = sized("big", 64, 524288, 2000)
    medium = sized("medium", 8, 16384, 100)
    exact = sized("exact", 4, 8192, 50)
    assert [n.id for n in rank([big, medium, exact], spec())] == ["exact", "medium", "big"]
    assert waste(exact, spec()) == 0.0


def test_rank_breaks_ties_by_recent_failures_then_id() -> None:
    a = sized("a", 8, 16384, 100, failures=2)
    b = sized("b", 8, 16384, 100, failures=0)
    c = sized("c", 8, 16384, 100, failures=0)
    assert [n.id for n in rank([a, c, b], spec())] == ["b", "c", "a"]


def test_rank_does_not_drop_or_duplicate_nodes() -> None:
    nodes = [sized(f"n{i}", 4 + i, 8192 * (i + 1), 50 + i) for i in range(6)]
    assert sorted(n.id for n in rank(list(reversed(nodes)), spec())) == sorted(n.id for n in nodes)


# -- property: ranking what passes the filters --------------------------------------------

quantity = st.one_of(
    st.integers(min_value=0, max_value=256),
    st.integers(min_value=0, max_value=256).map(str),
    st.none(),
    st.sampled_from(["many", "", "8GB"]),
)
TRAITS = ["CUSTOM_A", "CUSTOM_B", "CUSTOM_C"]


@st.composite
def nodes(draw: st.DrawFn) -> list[Node]:
    out = []
    for i in range(draw(st.integers(min_value=0, max_value=8))):
        props: dict[str, Any] = {}
        for key in ("cpus", "memory_mb", "local_gb"):
            if draw(st.booleans()) or draw(st.booleans()):
                props[key] = draw(quantity)
        arch = draw(st.sampled_from([None, "x86_64", "aarch64"]))
        if arch:
            props["cpu_arch"] = arch
        out.append(
            node(
                f"node-{i:02d}",
                provision_state=draw(st.sampled_from([AVAILABLE, AVAILABLE, MANAGEABLE])),
                maintenance=draw(st.booleans()),
                reservation=draw(st.sampled_from([None, None, "w1"])),
                owner=draw(st.sampled_from([None, PROJECT, "proj-b"])),
                resource_class=draw(st.sampled_from(["baremetal", "gpu"])),
                properties=props,
                capabilities=draw(
                    st.dictionaries(
                        st.sampled_from(["boot_mode"]), st.sampled_from(["uefi", "bios"])
                    )
                ),
                traits=draw(st.lists(st.sampled_from(TRAITS), unique=True)),
                recent_failures=draw(st.integers(min_value=0, max_value=3)),
            )
        )
    return out


specs = st.builds(
    RequestSpec,
    project_id=st.just(PROJECT),
    resource_class=st.sampled_from(["baremetal", "gpu"]),
    vcpus=st.integers(min_value=1, max_value=128),
    ram_mb=st.integers(min_value=1, max_value=256),
    disk_gb=st.integers(min_value=0, max_value=128),
    cpu_arch=st.sampled_from([None, "x86_64"]),
    capabilities=st.dictionaries(st.sampled_from(["boot_mode"]), st.sampled_from(["uefi"])),
    required_traits=st.frozensets(st.sampled_from(TRAITS), max_size=1),
    forbidden_traits=st.frozensets(st.sampled_from(TRAITS), max_size=1),
)


@settings(max_examples=150, deadline=None, database=None)
@given(pool=nodes(), want=specs)
def test_rank_of_filtered_nodes_is_sound_complete_and_best_fit(
    pool: list[Node], want: RequestSpec
) -> None:
    survivors = [n for n in pool if passes_all(n, want)]
    ranked = rank(survivors, want)
    # Sound: nothing ranked fails a filter; complete: nothing that passed is lost.
    assert all(first_failure(n, want) is None for n in ranked)
    assert sorted(n.id for n in ranked) == sorted(n.id for n in survivors)
    # Every node that was filtered out is charged to a named filter.
    names: set[str | None] = {f.name for f in FILTERS}
    labels = {first_failure(n, want) for n in pool if n not in survivors}
    assert all(label in names or label.split(" ")[0] in ("capability", "trait") for label in labels)
    # Best fit alone: waste never decreases down the ranking and stays within [0, 3].
    keys = [waste(n, want) for n in rank(survivors, want, {"best_fit": 1.0})]
    assert keys == sorted(keys)
    assert all(0.0 <= k <= 3.0 for k in keys)


# -- groups, hints, zones, lessee, exact sizes -----------------------------------------------


def rack(node_id: str, name: str | None, zone: str | None = None) -> Location:
    return Location(node_id, zone, {"rack": name} if name else {})


def test_anti_affinity_rejects_used_racks_and_unknown_racks() -> None:
    want = spec(group=GroupRule("g", "anti-affinity", "rack", ("r1", "r1")))
    assert first_failure(node("a"), want, loc=rack("a", "r2")) is None
    assert first_failure(node("a"), want, loc=rack("a", "r1")) == (
        "server group anti-affinity (rack)"
    )
    assert first_failure(node("a"), want, loc=rack("a", None)) is not None  # rack unknown


def test_affinity_follows_the_placed_members_and_the_first_goes_anywhere() -> None:
    placed = spec(group=GroupRule("g", "affinity", "zone", ("z1",)))
    assert passes_all(node("a"), placed, loc=rack("a", None, "z1"))
    assert not passes_all(node("a"), placed, loc=rack("a", None, "z2"))
    first = spec(group=GroupRule("g", "affinity", "zone", ()))
    assert passes_all(node("a"), first, loc=rack("a", None, "z2"))


def test_soft_policies_never_filter_but_weigh() -> None:
    soft = spec(group=GroupRule("g", "soft-anti-affinity", "rack", ("r1", "r1")))
    a, b = node("a"), node("b")
    locs = {"a": rack("a", "r1"), "b": rack("b", "r2")}
    assert all(passes_all(n, soft, loc=locs[n.id]) for n in (a, b))
    ranked = weighers.rank(
        [(a, locs["a"]), (b, locs["b"])], soft, {"soft_group": 1.0}, weighers.Context({})
    )
    assert [n.id for n, _ in ranked] == ["b", "a"]
    together = replace(soft, group=GroupRule("g", "soft-affinity", "rack", ("r1",)))
    ranked = weighers.rank(
        [(b, locs["b"]), (a, locs["a"])], together, {"soft_group": 1.0}, weighers.Context({})
    )
    assert [n.id for n, _ in ranked] == ["a", "b"]


def test_hints_same_and_different() -> None:
    same = spec(place_rules=(PlaceRule("same_rack_as", "rack", True, frozenset({"r1"})),))
    diff = spec(place_rules=(PlaceRule("different_rack_from", "rack", False, frozenset({"r1"})),))
    assert passes_all(node("a"), same, loc=rack("a", "r1"))
    assert first_failure(node("a"), same, loc=rack("a", "r2")) == "hint same_rack_as"
    assert passes_all(node("a"), diff, loc=rack("a", "r2"))
    assert first_failure(node("a"), diff, loc=rack("a", "r1")) == "hint different_rack_from"


def test_rack_spread_and_pack() -> None:
    a, b = node("a"), node("b")
    cands = [(a, rack("a", "busy")), (b, rack("b", "idle"))]
    used = weighers.Context({"busy": 5})
    spread = weighers.rank(cands, spec(), {"rack_spread": 1.0}, used)
    pack = weighers.rank(cands, spec(), {"rack_spread": -1.0}, used)
    assert [n.id for n, _ in spread] == ["b", "a"]
    assert [n.id for n, _ in pack] == ["a", "b"]


def test_lessee_may_use_a_leased_node() -> None:
    leased = node(owner="proj-owner", lessee=PROJECT)
    assert passes_all(leased, spec())
    assert first_failure(leased, spec(project_id="proj-other")) == "tenancy"


def test_exact_mode_wants_equal_sizes() -> None:
    exact = spec(exact=True)
    fits = node(properties={"cpus": 4, "memory_mb": 8192, "local_gb": 50, "cpu_arch": "x86_64"})
    assert passes_all(fits, exact)
    assert first_failure(node(), exact) == "cpus"  # 8 cpus > 4: too big in exact mode


def test_zone_and_node_name() -> None:
    assert passes_all(node("a"), spec(availability_zone="z1"), loc=rack("a", None, "z1"))
    assert first_failure(node("a"), spec(availability_zone="z1")) == "availability_zone"
    assert passes_all(node("a", name="n-a"), spec(node_name="n-a"))
    assert first_failure(node("b", name="n-b"), spec(node_name="n-a")) == "node_name"


def test_configured_filters_keep_the_mandatory_ones() -> None:
    chosen = flt.configured("cpus,ram")
    assert [f.name for f in chosen][:5] == list(flt.MANDATORY)
    assert [f.name for f in chosen][5:] == ["cpus", "ram"]
    with pytest.raises(ValueError, match="unknown scheduler filter"):
        flt.configured("cpus,gpu_magic")
    assert weighers.configured("best_fit=2, rack_spread=-1") == {
        "best_fit": 2.0,
        "rack_spread": -1.0,
    }
    with pytest.raises(ValueError, match="not a number"):
        weighers.configured("best_fit=x")
