"""Scheduler filters: small named units, switched on/off and ordered in configuration.

Each filter answers "may this node host this request?" for one node (``check``) and, where
it can, also as SQL (``sql``) so the database discards most nodes before Python sees them.
``check`` returns None when the node passes, else the reason's label: usually the filter's
name, "capability <key>" for a capability, so a no-valid-host can say which one. The order
is the order used to explain a no-valid-host: each node is charged to the first filter it
fails.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import cloned_traverse

from portal.core.models import Aggregate, AggregateNode, AggregateProject, Node
from portal.core.states import AVAILABLE, POWER_OFF, POWER_ON
from scheduler import operators
from scheduler.locations import Location
from scheduler.request import RequestSpec

Check = Callable[[Node, Location, RequestSpec], str | None]


@dataclass(frozen=True)
class SqlPart:
    """A filter's SQL for one request, split so the statement can be built once per shape.

    ``shape`` is everything the clause's SQL text depends on (two requests with equal shapes
    get the same SQL); ``params`` are the values bound into it, by parameter name. Names
    are ``req_`` and the filter's name: the parts of different filters never collide, nor
    do they with SQLAlchemy's own anonymous parameters (named after columns).
    """

    shape: Hashable
    params: dict[str, Any]


# The request's part (None: this request needs no clause), and the clause of a shape with
# named bind parameters (``bindparam(name)``, the names of ``SqlPart.params``).
Part = Callable[[RequestSpec], SqlPart | None]
Build = Callable[[Any], ColumnElement[bool]]
CONSTANT = SqlPart((), {})


@dataclass(frozen=True)
class Filter:
    name: str
    check: Check
    sql_part: Part | None = None
    sql_build: Build | None = None
    # False when the SQL only narrows (keeps a superset): Python must check again.
    sql_exact: bool = True

    @property
    def exact_in_sql(self) -> bool:
        return self.sql_part is not None and self.sql_exact

    def sql(self, spec: RequestSpec) -> ColumnElement[bool] | None:
        """This filter's clause for ``spec``, values bound (None: no SQL for it)."""
        if self.sql_part is None or self.sql_build is None:
            return None
        part = self.sql_part(spec)
        if part is None:
            return None
        return _bound(self.sql_build(part.shape), part.params)


def _bound(clause: ColumnElement[bool], params: dict[str, Any]) -> ColumnElement[bool]:
    """A copy of ``clause`` with its named parameters set to ``params``."""

    def bind(param: BindParameter[Any]) -> None:
        if param.key in params:
            param.value, param.required = params[param.key], False

    return cloned_traverse(clause, {}, {"bindparam": bind})


def _pred(name: str, ok: Callable[[Node, Location, RequestSpec], bool]) -> Check:
    return lambda n, loc, s: None if ok(n, loc, s) else name


def _literal(word: str) -> ColumnElement[str]:
    """A constant written into the SQL text, not bound: with bound values the planner
    could not prove that the query's rows are in the partial index ``ix_nodes_free``
    (``provision_state = 'available' ...``) when it plans once for every execution."""
    assert word.replace(" ", "").replace("_", "").isalnum()  # a state name, never input
    return literal_column(f"'{word}'", String)


def _constant(clause: Callable[[], ColumnElement[bool]]) -> tuple[Part, Build]:
    """SQL that does not depend on the request."""
    return (lambda _spec: CONSTANT), (lambda _shape: clause())


def _size(label: str, column: str, want: str) -> tuple[Check, Part, Build]:
    """node.<column> >= flavor.<want> (== in exact mode), in Python and in SQL."""

    def check(node: Node, _loc: Location, spec: RequestSpec) -> str | None:
        have, need = getattr(node, column), getattr(spec, want)
        if have is None:
            return label
        return None if (have == need if spec.exact else have >= need) else label

    def part(spec: RequestSpec) -> SqlPart:
        return SqlPart(spec.exact, {f"req_{label}": getattr(spec, want)})

    def build(exact: bool) -> ColumnElement[bool]:
        col, need = getattr(Node, column), bindparam(f"req_{label}", type_=Integer)
        return col == need if exact else col >= need

    return check, part, build


class _position(FunctionElement[int]):
    """Where ``needle`` starts in ``haystack`` (1-based), 0 if it does not occur."""

    type = Integer()
    name = "strpos"
    inherit_cache = True


@compiles(_position)
def _strpos(element: _position, compiler: Any, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_position, "sqlite")
def _instr(element: _position, compiler: Any, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


def _contains(haystack: Any, needle: Any) -> ColumnElement[bool]:
    """``haystack`` contains ``needle`` (NULL when haystack is NULL, so a WHERE drops it).

    Not ``LIKE '%' || needle || '%'``: PostgreSQL guesses that such a pattern matches
    0.5 % of the rows and then reads and sorts every free node of the class in a bitmap
    scan instead of walking ``ix_nodes_free`` in order for one batch. For a comparison
    of a function's result it guesses a third, and the index walk wins without any
    ``SET enable_bitmapscan``.
    """
    return _position(haystack, needle) > literal_column("0")


def _capabilities(node: Node, _loc: Location, spec: RequestSpec) -> str | None:
    caps = node.capabilities or {}
    for key, requirement in spec.capabilities.items():
        if not operators.matches(requirement, caps.get(key)):
            return f"capability {key}"
    return None


def _capabilities_part(spec: RequestSpec) -> SqlPart | None:
    """A superset of the capability check, for SQL: for plain, ``s==`` and ``<in>``
    requirements the node's value must contain the operand's longest word (ignoring case).
    Python then applies the exact operator; SQL only keeps hopeless nodes out of the batch.
    """
    keys: list[str] = []
    params: dict[str, Any] = {}
    for key, requirement in spec.capabilities.items():
        parsed = operators.parse(requirement)
        if parsed.error is not None or parsed.op not in ("", "s==", "<in>"):
            continue
        operand = requirement.split(None, 1)[1] if parsed.op else requirement
        words = operand.split()
        if not words:
            continue
        params[f"req_capabilities_{len(keys)}"] = max(words, key=len).lower()
        keys.append(key)
    return SqlPart(tuple(keys), params) if keys else None


def _capabilities_build(keys: tuple[str, ...]) -> ColumnElement[bool]:
    return and_(
        *(
            _contains(
                func.lower(Node.capabilities[key].as_string()),
                bindparam(f"req_capabilities_{i}", type_=String),
            )
            for i, key in enumerate(keys)
        )
    )


def _traits_part(spec: RequestSpec) -> SqlPart | None:
    """Exact in SQL: trait names cannot hold quotes, so '"NAME"' occurs in the stored JSON
    list exactly when the node has the trait."""
    required, forbidden = sorted(spec.required_traits), sorted(spec.forbidden_traits)
    if not required and not forbidden:
        return None
    params = {f"req_traits_required_{i}": f'"{t}"' for i, t in enumerate(required)}
    params |= {f"req_traits_forbidden_{i}": f'"{t}"' for i, t in enumerate(forbidden)}
    return SqlPart((len(required), len(forbidden)), params)


def _traits_build(counts: tuple[int, int]) -> ColumnElement[bool]:
    text = cast(Node.traits, String)
    required, forbidden = counts
    clauses = [
        _contains(text, bindparam(f"req_traits_required_{i}", type_=String))
        for i in range(required)
    ]
    clauses += [
        ~_contains(text, bindparam(f"req_traits_forbidden_{i}", type_=String))
        for i in range(forbidden)
    ]
    return and_(*clauses)


def _traits(node: Node, _loc: Location, spec: RequestSpec) -> str | None:
    traits = set(node.traits or [])
    if not spec.required_traits <= traits:
        return "trait required"
    if spec.forbidden_traits & traits:
        return "trait forbidden"
    return None


def _tenancy(node: Node, _loc: Location, spec: RequestSpec) -> bool:
    return node.owner is None or spec.project_id in (node.owner, node.lessee)


def _tenancy_part(spec: RequestSpec) -> SqlPart:
    return SqlPart((), {"req_tenancy": spec.project_id})


def _tenancy_build(_shape: object) -> ColumnElement[bool]:
    project = bindparam("req_tenancy", type_=String)
    return or_(Node.owner.is_(None), Node.owner == project, Node.lessee == project)


def _aggregate_tenancy(_node: Node, loc: Location, spec: RequestSpec) -> bool:
    return loc.projects is None or spec.project_id in loc.projects


def _aggregate_tenancy_part(spec: RequestSpec) -> SqlPart:
    return SqlPart((), {"req_aggregate_tenancy": spec.project_id})


def _aggregate_tenancy_build(_shape: object) -> ColumnElement[bool]:
    restricted = (
        select(AggregateNode.node_id)
        .join(AggregateProject, AggregateProject.aggregate_id == AggregateNode.aggregate_id)
        .where(AggregateNode.node_id == Node.id)
    )
    allowed = restricted.where(
        AggregateProject.project_id == bindparam("req_aggregate_tenancy", type_=String)
    )
    return or_(~exists(restricted), exists(allowed))


def _zone(_node: Node, loc: Location, spec: RequestSpec) -> bool:
    return spec.availability_zone is None or loc.zone == spec.availability_zone


def _zone_part(spec: RequestSpec) -> SqlPart | None:
    if spec.availability_zone is None:
        return None
    return SqlPart((), {"req_availability_zone": spec.availability_zone})


def _zone_build(_shape: object) -> ColumnElement[bool]:
    return Node.id.in_(
        select(AggregateNode.node_id)
        .join(Aggregate, Aggregate.id == AggregateNode.aggregate_id)
        .where(Aggregate.availability_zone == bindparam("req_availability_zone", type_=String))
    )


def _group(_node: Node, loc: Location, spec: RequestSpec) -> str | None:
    rule = spec.group
    if rule is None or rule.policy.startswith("soft-") or not rule.member_places:
        return None
    place = loc.at(rule.scope)
    if rule.policy == "anti-affinity":
        ok = place is not None and place not in rule.member_places
    else:  # affinity: where the first members went
        ok = place is not None and place in rule.member_places
    return None if ok else f"server group {rule.policy} ({rule.scope})"


def _place_rules(_node: Node, loc: Location, spec: RequestSpec) -> str | None:
    for rule in spec.place_rules:
        place = loc.at(rule.scope)
        inside = place is not None and place in rule.places
        if inside != rule.same:
            return f"hint {rule.label}"
    return None


def _node_name(node: Node, _loc: Location, spec: RequestSpec) -> bool:
    return spec.node_name is None or spec.node_name in (node.name, node.id)


def _node_name_part(spec: RequestSpec) -> SqlPart | None:
    return None if spec.node_name is None else SqlPart((), {"req_node_name": spec.node_name})


def _node_name_build(_shape: object) -> ColumnElement[bool]:
    name = bindparam("req_node_name", type_=String)
    return or_(Node.name == name, Node.id == name)


def _cpu_arch(node: Node, _loc: Location, spec: RequestSpec) -> bool:
    return spec.cpu_arch is None or node.cpu_arch == spec.cpu_arch


def _cpu_arch_part(spec: RequestSpec) -> SqlPart | None:
    return None if spec.cpu_arch is None else SqlPart((), {"req_cpu_arch": spec.cpu_arch})


def _cpu_arch_build(_shape: object) -> ColumnElement[bool]:
    return Node.cpu_arch == bindparam("req_cpu_arch", type_=String)


def _resource_class_part(spec: RequestSpec) -> SqlPart:
    return SqlPart((), {"req_resource_class": spec.resource_class})


def _resource_class_build(_shape: object) -> ColumnElement[bool]:
    return Node.resource_class == bindparam("req_resource_class", type_=String)


_cpus, _cpus_part, _cpus_build = _size("cpus", "cpus", "vcpus")
_ram, _ram_part, _ram_build = _size("ram", "memory_mb", "ram_mb")
_disk, _disk_part, _disk_build = _size("disk", "local_gb", "disk_gb")

FILTERS: tuple[Filter, ...] = (
    Filter(
        "provision_state",
        _pred("provision_state", lambda n, loc, s: n.provision_state == AVAILABLE),
        *_constant(lambda: Node.provision_state == _literal(AVAILABLE)),
    ),
    Filter(
        "maintenance",
        _pred("maintenance", lambda n, loc, s: not n.maintenance),
        *_constant(lambda: Node.maintenance == false()),
    ),
    Filter(
        "reserved",
        _pred("reserved", lambda n, loc, s: n.reservation is None and n.instance_id is None),
        *_constant(lambda: and_(Node.reservation.is_(None), Node.instance_id.is_(None))),
    ),
    Filter(
        "power_state",
        _pred("power_state", lambda n, loc, s: n.power_state in (POWER_ON, POWER_OFF)),
        *_constant(lambda: Node.power_state.in_((_literal(POWER_ON), _literal(POWER_OFF)))),
    ),
    Filter("tenancy", _pred("tenancy", _tenancy), _tenancy_part, _tenancy_build),
    Filter(
        "aggregate_tenancy",
        _pred("aggregate_tenancy", _aggregate_tenancy),
        _aggregate_tenancy_part,
        _aggregate_tenancy_build,
    ),
    Filter(
        "resource_class",
        _pred("resource_class", lambda n, loc, s: n.resource_class == s.resource_class),
        _resource_class_part,
        _resource_class_build,
    ),
    Filter("cpus", _cpus, _cpus_part, _cpus_build),
    Filter("ram", _ram, _ram_part, _ram_build),
    Filter("disk", _disk, _disk_part, _disk_build),
    Filter("cpu_arch", _pred("cpu_arch", _cpu_arch), _cpu_arch_part, _cpu_arch_build),
    Filter("capabilities", _capabilities, _capabilities_part, _capabilities_build, sql_exact=False),
    Filter("traits", _traits, _traits_part, _traits_build),
    Filter("availability_zone", _pred("availability_zone", _zone), _zone_part, _zone_build),
    Filter("server_group", _group),
    Filter("hints", _place_rules),
    Filter("node_name", _pred("node_name", _node_name), _node_name_part, _node_name_build),
)
BY_NAME = {f.name: f for f in FILTERS}
# What no configuration may switch off: without them a node could be handed out twice,
# or a tenant given a node that is not theirs.
MANDATORY = ("provision_state", "maintenance", "reserved", "tenancy", "aggregate_tenancy")


def configured(names: str) -> tuple[Filter, ...]:
    """The filters named in ``names`` (comma-separated, in that order); empty: all.

    Mandatory filters are always on (first, if not placed explicitly).
    """
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        return FILTERS
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise ValueError(
            f"unknown scheduler filter(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}"
        )
    missing = [n for n in MANDATORY if n not in wanted]
    return tuple(BY_NAME[n] for n in [*missing, *wanted])


def first_failure(
    node: Node, loc: Location, spec: RequestSpec, filters: tuple[Filter, ...] = FILTERS
) -> str | None:
    for f in filters:
        label = f.check(node, loc, spec)
        if label is not None:
            return label
    return None


def sql_clauses(spec: RequestSpec, filters: tuple[Filter, ...] = FILTERS) -> list[Any]:
    clauses = [f.sql(spec) for f in filters]
    return [c for c in clauses if c is not None] or [true()]


def sql_shape(
    spec: RequestSpec, filters: tuple[Filter, ...] = FILTERS
) -> tuple[tuple[tuple[Filter, Hashable], ...], dict[str, Any]]:
    """The request's SQL as (shape, bound values): requests of equal shape share one
    statement (see ``sql_shaped``), each with its own values."""
    shape, params = [], {}
    for f in filters:
        part = f.sql_part(spec) if f.sql_part is not None else None
        if part is not None:
            shape.append((f, part.shape))
            params.update(part.params)
    return tuple(shape), params


def sql_shaped(shape: tuple[tuple[Filter, Hashable], ...]) -> list[Any]:
    """The clauses of a ``sql_shape`` shape, with named parameters for its values."""
    clauses = [f.sql_build(part) for f, part in shape if f.sql_build is not None]
    return clauses or [true()]
