"""Scheduler filters: small named units, switched on/off and ordered in configuration.

Each filter answers "may this node host this request?" for one node (``check``) and, where
it can, also as SQL (``sql``) so the database discards most nodes before Python sees them.
``check`` returns None when the node passes, else the reason's label: usually the filter's
name, "capability <key>" for a capability, so a no-valid-host can say which one. The order
is the order used to explain a no-valid-host: each node is charged to the first filter it
fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, false, func, or_, select, true

from portal.core.models import Aggregate, AggregateNode, AggregateProject, Node
from portal.core.states import AVAILABLE, POWER_OFF, POWER_ON
from scheduler import operators
from scheduler.locations import Location
from scheduler.request import RequestSpec

Check = Callable[[Node, Location, RequestSpec], str | None]
Sql = Callable[[RequestSpec], ColumnElement[bool] | None]


@dataclass(frozen=True)
class Filter:
    name: str
    check: Check
    sql: Sql | None = None
    # False when ``sql`` only narrows (keeps a superset): Python must check again.
    sql_exact: bool = True

    @property
    def exact_in_sql(self) -> bool:
        return self.sql is not None and self.sql_exact


def _pred(name: str, ok: Callable[[Node, Location, RequestSpec], bool]) -> Check:
    return lambda n, loc, s: None if ok(n, loc, s) else name


def _size(label: str, column: str, want: str) -> tuple[Check, Sql]:
    """node.<column> >= flavor.<want> (== in exact mode), in Python and in SQL."""

    def check(node: Node, _loc: Location, spec: RequestSpec) -> str | None:
        have, need = getattr(node, column), getattr(spec, want)
        if have is None:
            return label
        return None if (have == need if spec.exact else have >= need) else label

    def sql(spec: RequestSpec) -> ColumnElement[bool]:
        col, need = getattr(Node, column), getattr(spec, want)
        return col == need if spec.exact else col >= need

    return check, sql


def _capabilities(node: Node, _loc: Location, spec: RequestSpec) -> str | None:
    caps = node.capabilities or {}
    for key, requirement in spec.capabilities.items():
        if not operators.matches(requirement, caps.get(key)):
            return f"capability {key}"
    return None


def _capabilities_sql(spec: RequestSpec) -> ColumnElement[bool] | None:
    """A superset of the capability check, for SQL: for plain, ``s==`` and ``<in>``
    requirements the node's value must contain the operand's longest word (ignoring case).
    Python then applies the exact operator; SQL only keeps hopeless nodes out of the batch.
    """
    clauses = []
    for key, requirement in spec.capabilities.items():
        parsed = operators.parse(requirement)
        if parsed.error is not None or parsed.op not in ("", "s==", "<in>"):
            continue
        operand = requirement.split(None, 1)[1] if parsed.op else requirement
        words = operand.split()
        if not words:
            continue
        word = max(words, key=len).lower()
        value = func.lower(Node.capabilities[key].as_string())
        clauses.append(value.contains(word, autoescape=True))
    return and_(*clauses) if clauses else None


def _traits_sql(spec: RequestSpec) -> ColumnElement[bool] | None:
    """Exact in SQL: trait names cannot hold quotes, so '"NAME"' occurs in the stored JSON
    list exactly when the node has the trait."""
    text = cast(Node.traits, String)
    clauses = [text.contains(f'"{t}"', autoescape=True) for t in sorted(spec.required_traits)]
    clauses += [~text.contains(f'"{t}"', autoescape=True) for t in sorted(spec.forbidden_traits)]
    return and_(*clauses) if clauses else None


def _traits(node: Node, _loc: Location, spec: RequestSpec) -> str | None:
    traits = set(node.traits or [])
    if not spec.required_traits <= traits:
        return "trait required"
    if spec.forbidden_traits & traits:
        return "trait forbidden"
    return None


def _tenancy(node: Node, _loc: Location, spec: RequestSpec) -> bool:
    return node.owner is None or spec.project_id in (node.owner, node.lessee)


def _tenancy_sql(spec: RequestSpec) -> ColumnElement[bool]:
    return or_(Node.owner.is_(None), Node.owner == spec.project_id, Node.lessee == spec.project_id)


def _aggregate_tenancy(_node: Node, loc: Location, spec: RequestSpec) -> bool:
    return loc.projects is None or spec.project_id in loc.projects


def _aggregate_tenancy_sql(spec: RequestSpec) -> ColumnElement[bool]:
    restricted = (
        select(AggregateNode.node_id)
        .join(AggregateProject, AggregateProject.aggregate_id == AggregateNode.aggregate_id)
        .where(AggregateNode.node_id == Node.id)
    )
    allowed = restricted.where(AggregateProject.project_id == spec.project_id)
    return or_(~exists(restricted), exists(allowed))


def _zone(_node: Node, loc: Location, spec: RequestSpec) -> bool:
    return spec.availability_zone is None or loc.zone == spec.availability_zone


def _zone_sql(spec: RequestSpec) -> ColumnElement[bool] | None:
    if spec.availability_zone is None:
        return None
    return Node.id.in_(
        select(AggregateNode.node_id)
        .join(Aggregate, Aggregate.id == AggregateNode.aggregate_id)
        .where(Aggregate.availability_zone == spec.availability_zone)
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


def _node_name_sql(spec: RequestSpec) -> ColumnElement[bool] | None:
    if spec.node_name is None:
        return None
    return or_(Node.name == spec.node_name, Node.id == spec.node_name)


def _cpu_arch(node: Node, _loc: Location, spec: RequestSpec) -> bool:
    return spec.cpu_arch is None or node.cpu_arch == spec.cpu_arch


def _cpu_arch_sql(spec: RequestSpec) -> ColumnElement[bool] | None:
    return None if spec.cpu_arch is None else Node.cpu_arch == spec.cpu_arch


_cpus, _cpus_sql = _size("cpus", "cpus", "vcpus")
_ram, _ram_sql = _size("ram", "memory_mb", "ram_mb")
_disk, _disk_sql = _size("disk", "local_gb", "disk_gb")

FILTERS: tuple[Filter, ...] = (
    Filter(
        "provision_state",
        _pred("provision_state", lambda n, loc, s: n.provision_state == AVAILABLE),
        lambda s: Node.provision_state == AVAILABLE,
    ),
    Filter(
        "maintenance",
        _pred("maintenance", lambda n, loc, s: not n.maintenance),
        lambda s: Node.maintenance == false(),
    ),
    Filter(
        "reserved",
        _pred("reserved", lambda n, loc, s: n.reservation is None and n.instance_id is None),
        lambda s: and_(Node.reservation.is_(None), Node.instance_id.is_(None)),
    ),
    Filter(
        "power_state",
        _pred("power_state", lambda n, loc, s: n.power_state in (POWER_ON, POWER_OFF)),
        lambda s: Node.power_state.in_((POWER_ON, POWER_OFF)),
    ),
    Filter("tenancy", _pred("tenancy", _tenancy), _tenancy_sql),
    Filter(
        "aggregate_tenancy",
        _pred("aggregate_tenancy", _aggregate_tenancy),
        _aggregate_tenancy_sql,
    ),
    Filter(
        "resource_class",
        _pred("resource_class", lambda n, loc, s: n.resource_class == s.resource_class),
        lambda s: Node.resource_class == s.resource_class,
    ),
    Filter("cpus", _cpus, _cpus_sql),
    Filter("ram", _ram, _ram_sql),
    Filter("disk", _disk, _disk_sql),
    Filter("cpu_arch", _pred("cpu_arch", _cpu_arch), _cpu_arch_sql),
    Filter("capabilities", _capabilities, _capabilities_sql, sql_exact=False),
    Filter("traits", _traits, _traits_sql),
    Filter("availability_zone", _pred("availability_zone", _zone), _zone_sql),
    Filter("server_group", _group),
    Filter("hints", _place_rules),
    Filter("node_name", _pred("node_name", _node_name), _node_name_sql),
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
    clauses = [f.sql(spec) for f in filters if f.sql is not None]
    return [c for c in clauses if c is not None] or [true()]
