"""The batch query is built once per request shape: shapes never mix, values never leak."""

from __future__ import annotations

from typing import Any

import pytest

from portal.core.models import Node
from scheduler import filters as flt
from scheduler.filters import sql_shape
from scheduler.locations import Location
from scheduler.request import RequestSpec
from scheduler.select import DEFAULT, batch_statement, candidates


def _spec(**over: Any) -> RequestSpec:
    fields: dict[str, Any] = {
        "project_id": "p",
        "resource_class": "baremetal",
        "vcpus": 4,
        "ram_mb": 8192,
        "disk_gb": 50,
    }
    fields.update(over)
    return RequestSpec(**fields)


# Requests of different shapes: each differs from another in what the SQL text depends on.
SHAPES = [
    _spec(),
    _spec(exact=True),
    _spec(cpu_arch="x86_64"),
    _spec(cpu_arch="aarch64", capabilities={"boot_mode": "uefi"}),
    _spec(capabilities={"boot_mode": "bios"}),
    _spec(capabilities={"boot_mode": "uefi", "cpu_model": "<in> EPYC"}),
    _spec(capabilities={"cpu_model": "<in> EPYC"}),
    _spec(capabilities={"nics": ">= 2"}),  # not in SQL: same shape as _spec()
    _spec(required_traits=frozenset({"CUSTOM_GPU"})),
    _spec(forbidden_traits=frozenset({"CUSTOM_GPU"})),
    _spec(required_traits=frozenset({"CUSTOM_GPU", "CUSTOM_NVME"})),
    _spec(required_traits=frozenset({"CUSTOM_NVME"}), forbidden_traits=frozenset({"CUSTOM_GPU"})),
    _spec(availability_zone="az1"),
    _spec(node_name="n-3"),
    _spec(node_name="n-3", availability_zone="az1", exact=True),
]


def test_equal_shapes_share_one_statement_with_their_own_values() -> None:
    a, a_params = sql_shape(_spec(vcpus=4, capabilities={"boot_mode": "uefi"}))
    b, b_params = sql_shape(
        _spec(project_id="q", resource_class="gpu", vcpus=64, capabilities={"boot_mode": "bios"})
    )
    assert a == b
    assert batch_statement(a, False, 20, 0) is batch_statement(b, False, 20, 0)
    assert a_params["req_cpus"] == 4 and b_params["req_cpus"] == 64
    assert a_params["req_tenancy"] == "p" and b_params["req_tenancy"] == "q"
    assert a_params["req_capabilities_0"] == "uefi"
    assert b_params["req_capabilities_0"] == "bios"


def test_different_shapes_get_different_statements() -> None:
    shapes = {sql_shape(s)[0] for s in SHAPES}
    assert len(shapes) == len(SHAPES) - 1  # the ">= 2" capability is Python's alone
    statements = {id(batch_statement(shape, False, 20, 0)) for shape in shapes}
    assert len(statements) == len(shapes)
    # the lock, the batch size and the offset are part of the key too
    shape = sql_shape(_spec())[0]
    keys = [(False, 20, 0), (True, 20, 0), (False, 50, 0), (False, 20, 20)]
    assert len({id(batch_statement(shape, *k)) for k in keys}) == len(keys)


def test_filter_sql_binds_the_request_values() -> None:
    clause = flt.BY_NAME["cpus"].sql(_spec(vcpus=12))
    assert clause is not None
    assert clause.compile().params == {"req_cpus": 12}
    assert flt.BY_NAME["cpu_arch"].sql(_spec()) is None


def test_substrings_are_searched_as_they_are() -> None:
    _, params = sql_shape(_spec(capabilities={"x": "A_b%c/d"}, required_traits=frozenset({"T_1"})))
    assert params["req_capabilities_0"] == "a_b%c/d"  # no LIKE: nothing to escape
    assert params["req_traits_required_0"] == '"T_1"'


def test_constant_conditions_are_written_into_the_sql() -> None:
    """So a plan made once for every execution still uses the partial index ix_nodes_free."""
    from sqlalchemy.dialects import postgresql

    shape, _ = sql_shape(_spec(capabilities={"boot_mode": "uefi"}))
    sql = str(batch_statement(shape, True, 20, 0).compile(dialect=postgresql.dialect()))
    assert "nodes.provision_state = 'available'" in sql
    assert "nodes.power_state IN ('power on', 'power off')" in sql
    assert "LIKE" not in sql and "strpos(lower(" in sql
    assert "FOR UPDATE OF nodes SKIP LOCKED" in sql


def _nodes() -> list[Node]:
    out = []
    for i in range(18):
        out.append(
            Node(
                id=f"00000000-0000-0000-0000-{i:012d}",
                name=f"n-{i}",
                resource_class="baremetal",
                provision_state="available",
                power_state="power off",
                maintenance=False,
                properties={
                    "cpus": 4 * (1 + i % 3),
                    "memory_mb": 8192,
                    "local_gb": 50 + 10 * (i % 2),
                    "cpu_arch": "aarch64" if i % 5 == 0 else "x86_64",
                },
                capabilities={
                    "boot_mode": "uefi" if i % 2 else "bios",
                    "cpu_model": "AMD EPYC 7302" if i % 3 == 0 else "Xeon",
                    "nics": str(i % 4),
                    "x": "a_b%c/d" if i == 7 else "aXbYc/d",
                },
                traits=[
                    t for t, on in (("CUSTOM_GPU", i % 4 == 0), ("CUSTOM_NVME", i % 3 == 1)) if on
                ],
                recent_failures=0,
            )
        )
    return out


def _expected(nodes: list[Node], spec: RequestSpec) -> list[str]:
    """What ``candidates`` must return, with every filter run in Python (no SQL, no cache).
    Fewer nodes than one batch: the ranking of every node that passes."""
    from scheduler import weighers

    assert len(nodes) < DEFAULT.max_candidates
    passing = [(n, Location(n.id)) for n in nodes]
    passing = [(n, loc) for n, loc in passing if flt.first_failure(n, loc, spec) is None]
    ctx = weighers.Context(used_per_rack={})
    return [n.id for n, _ in weighers.rank(passing, spec, DEFAULT.multipliers, ctx)]


@pytest.mark.parametrize("skip_locked", [False, True])
def test_interleaved_shapes_select_what_python_selects(ctx: Any, skip_locked: bool) -> None:
    nodes = _nodes()
    with ctx.session() as s:
        s.add_all(nodes)
    with ctx.session() as s:
        plain = [s.get_one(Node, n.id) for n in nodes]
        s.expunge_all()
    specs = [*SHAPES, _spec(capabilities={"x": "a_b%c/d"}), _spec(vcpus=8), *reversed(SHAPES)]
    specs += [_spec(vcpus=12, node_name="n-5"), _spec(vcpus=12, node_name="n-2")]
    for _ in range(2):  # the second pass runs on statements cached by the first
        for spec in specs:
            with ctx.session() as s:
                got = [n.id for n in candidates(s, spec, DEFAULT, skip_locked=skip_locked)]
            assert got == _expected(plain, spec), spec
    assert _expected(plain, _spec(capabilities={"x": "a_b%c/d"})) == [nodes[7].id]


def test_ranked_nodes_are_the_sessions_nodes(ctx: Any) -> None:
    nodes = _nodes()[:4]
    with ctx.session() as s:
        s.add_all(nodes)
    spec = _spec(vcpus=1)
    with ctx.session() as s:
        already = s.get_one(Node, nodes[1].id)  # in the identity map before the query
        ranked = candidates(s, spec)
        assert len(ranked) == 4 and ranked == list(ranked) and ranked != []
        assert ranked[:2] == [ranked[0], ranked[1]] and ranked[-1] is ranked[3]
        assert any(n is already for n in ranked)
        for n in ranked:
            assert n in s and s.get_one(Node, n.id) is n
            assert n.properties["cpus"] == n.cpus  # not read by the batch: loaded on use
        s.refresh(ranked[0])  # what the build job does after its claim
        ranked[0].last_error = "touched"  # a change to a taken node is flushed as usual
    with ctx.session() as s:
        assert s.get_one(Node, ranked[0].id).last_error == "touched"
        assert {n.last_error for n in s.query(Node)} == {"touched", None}
