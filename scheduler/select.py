"""Candidate selection, the no-valid-host explanation and the capacity count.

Selection runs the filters' SQL in the database and takes the ``max_candidates`` smallest
nodes that fit (cpus, then RAM, then disk: the order of the partial index on free nodes,
so the database stops after one batch), then runs every filter in Python on that bounded
set and ranks the survivors with the weighers. If a whole batch fails the fine filters,
the next batch is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast, overload

from sqlalchemy import select
from sqlalchemy.orm import Session, load_only, make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from portal.core.config import Settings
from portal.core.models import Node
from scheduler import filters, locations, weighers
from scheduler.filters import Filter, first_failure, sql_clauses, sql_shape, sql_shaped
from scheduler.request import RequestSpec

# What filters and weighers read: the rest (driver_info, properties, ...) stays unread.
SCHEDULING_COLUMNS = (
    Node.id,
    Node.name,
    Node.resource_class,
    Node.provision_state,
    Node.maintenance,
    Node.reservation,
    Node.instance_id,
    Node.power_state,
    Node.owner,
    Node.lessee,
    Node.cpus,
    Node.memory_mb,
    Node.local_gb,
    Node.cpu_arch,
    Node.capabilities,
    Node.traits,
    Node.recent_failures,
)
# Labels of the filters that decide what a tenant may see at all.
VISIBILITY = ("tenancy", "aggregate_tenancy")


@dataclass(frozen=True)
class SchedulerConfig:
    filters: tuple[Filter, ...] = filters.FILTERS
    weighers: dict[str, float] | None = None
    max_candidates: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerConfig:
        return cls(
            filters=filters.configured(settings.scheduler_filters),
            weighers=weighers.configured(settings.scheduler_weighers),
            max_candidates=max(1, settings.scheduler_max_candidates),
        )

    @property
    def multipliers(self) -> dict[str, float]:
        return self.weighers if self.weighers is not None else {"best_fit": 1.0}


DEFAULT = SchedulerConfig(weighers=weighers.configured(Settings.scheduler_weighers))


@dataclass(frozen=True)
class NoValidHost:
    total: int
    removed: dict[str, int]

    @property
    def message(self) -> str:
        reasons = ", ".join(
            f"{label} {count}"
            for label, count in sorted(self.removed.items(), key=lambda kv: (-kv[1], kv[0]))
            if count
        )
        return f"No valid host: 0 of {self.total} nodes left ({reasons or 'no nodes enrolled'})"


def candidates(
    session: Session,
    spec: RequestSpec,
    config: SchedulerConfig = DEFAULT,
    skip_locked: bool = False,
) -> Sequence[Node]:
    """Nodes that pass every filter, best first (at most one batch of them).

    The batch is read as plain rows (the scheduling columns only); a node becomes an ORM
    object, persistent in ``session``, when the caller takes it from the sequence.

    ``skip_locked`` (PostgreSQL): lock the batch's rows until the caller's transaction
    ends and skip rows other transactions hold, so concurrent schedulers read disjoint
    batches. A caller must not conclude "no valid host" from an empty skip-locked result.
    """
    shape, params = sql_shape(spec, config.filters)
    lock = skip_locked and session.get_bind().dialect.name == "postgresql"
    # What SQL decided exactly is not checked again; only the rest runs in Python.
    fine = tuple(f for f in config.filters if not f.exact_in_sql)
    batch, offset = config.max_candidates, 0
    while True:
        rows = _read_batch(session, batch_statement(shape, lock, batch, offset), params)
        if not rows:
            return []
        locs = _locations(session, rows, spec, config)
        passing = [
            (n, locs[n.id]) for n in rows if first_failure(n, locs[n.id], spec, fine) is None
        ]
        if passing:
            return Ranked(session, [n for n, _ in _rank(session, passing, spec, config)])
        if len(rows) < batch:
            return []
        offset += batch


@lru_cache(maxsize=256)
def batch_statement(
    shape: tuple[tuple[Filter, Hashable], ...], skip_locked: bool, limit: int, offset: int
) -> Any:
    """The batch query of one request shape (``filters.sql_shape``), built once.

    Building a statement costs about a millisecond of Python; requests of one shape
    (flavor and hints of the same form: the values go in as bound parameters) reuse it,
    and SQLAlchemy's compiled cache then finds its SQL by the same object.
    """
    # Smallest nodes first: the order of the partial index ix_nodes_free, so the database
    # reads the free nodes of the class in order and stops after one batch. The weighers
    # (best fit on the exact waste among them) rank within the batch.
    table = Node.__table__
    stmt = (
        select(*(table.c[col.key] for col in SCHEDULING_COLUMNS))
        .where(*sql_shaped(shape))
        .order_by(table.c.cpus, table.c.memory_mb, table.c.local_gb, table.c.id)
        .limit(limit)
        .offset(offset)
    )
    return stmt.with_for_update(skip_locked=True, of=table) if skip_locked else stmt


class Ranked(Sequence[Node]):
    """The ranked batch. Its rows carry the scheduling columns under the ``Node``
    attributes' names (what filters and weighers read); an item taken from it is the
    session's ``Node``: the one already in its identity map, else one made from the row
    and attached without a query (the columns not read are loaded when first used)."""

    def __init__(self, session: Session, rows: list[Node]) -> None:
        self._session, self._rows = session, rows
        self._nodes: dict[int, Node] = {}

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Node: ...
    @overload
    def __getitem__(self, index: slice) -> list[Node]: ...
    def __getitem__(self, index: int | slice) -> Node | list[Node]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self._rows))[index]]
        i = range(len(self._rows))[index]  # IndexError, negative indexes
        node = self._nodes.get(i)
        if node is None:
            node = self._nodes[i] = _attached(self._session, self._rows[i])
        return node

    def __iter__(self) -> Iterator[Node]:
        return (self[i] for i in range(len(self._rows)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ranked({[row.id for row in self._rows]!r})"


def _attached(session: Session, row: Any) -> Node:
    existing = session.identity_map.get(identity_key(Node, row.id))
    if existing is not None:
        return cast(Node, existing)
    node = Node()
    for col in SCHEDULING_COLUMNS:
        setattr(node, col.key, getattr(row, col.key))
    make_transient_to_detached(node)  # what was set counts as loaded, the rest as expired
    session.add(node)
    return node


def _locations(
    session: Session, rows: list[Node], spec: RequestSpec, config: SchedulerConfig
) -> dict[str, locations.Location]:
    """Where the batch's nodes are, when anything still to decide depends on it."""
    mult = config.multipliers
    if spec.group is None and not spec.place_rules and not mult.get("rack_spread"):
        return {n.id: locations.Location(n.id) for n in rows}
    return locations.locations(session, [n.id for n in rows])


def _read_batch(session: Session, stmt: Any, params: dict[str, Any]) -> list[Node]:
    """One batch, as Core rows (not ORM objects): filters and weighers read them by
    attribute name. No ``SET enable_bitmapscan``: the query is written so that PostgreSQL
    walks ``ix_nodes_free`` in order and stops after one batch (see ``filters._contains``
    and ``filters._literal``)."""
    return cast(list[Node], session.execute(stmt, params).all())


def _fits(node: Node, loc: locations.Location, spec: RequestSpec, config: SchedulerConfig) -> bool:
    return first_failure(node, loc, spec, config.filters) is None


def _rank(
    session: Session,
    passing: list[tuple[Node, locations.Location]],
    spec: RequestSpec,
    config: SchedulerConfig,
) -> list[tuple[Node, locations.Location]]:
    multipliers = config.multipliers
    used = locations.used_per_rack(session) if multipliers.get("rack_spread") else {}
    return weighers.rank(passing, spec, multipliers, weighers.Context(used_per_rack=used))


def explain(
    session: Session, spec: RequestSpec, config: SchedulerConfig = DEFAULT
) -> tuple[NoValidHost, NoValidHost]:
    """Charge every node to the first filter that rejects it: (admin view, tenant view).

    The tenant view counts only the nodes the tenant could ever get (shared pool, its own,
    leased to it), so it tells a tenant nothing about other tenants' nodes.
    """
    nodes = session.scalars(select(Node).options(load_only(*SCHEDULING_COLUMNS))).all()
    locs = locations.locations(session, [n.id for n in nodes], every_node=True)
    labels = [first_failure(n, locs[n.id], spec, config.filters) for n in nodes]
    visible = [label for label in labels if label not in VISIBILITY]
    return _counted(labels), _counted(visible)


def _counted(labels: list[str | None]) -> NoValidHost:
    counts = Counter(label for label in labels if label is not None)
    return NoValidHost(total=len(labels), removed=dict(counts))


def capacity(
    session: Session, spec: RequestSpec, config: SchedulerConfig = DEFAULT
) -> dict[str | None, int]:
    """How many nodes could host ``spec`` right now, per availability zone (None: no zone)."""
    rows = session.scalars(select(Node).where(*sql_clauses(spec, config.filters))).all()
    locs = locations.locations(session, [n.id for n in rows])
    per_zone: Counter[str | None] = Counter()
    for n in rows:
        if _fits(n, locs[n.id], spec, config):
            per_zone[locs[n.id].zone] += 1
    return dict(per_zone)
