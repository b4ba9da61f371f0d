"""Candidate selection, the no-valid-host explanation and the capacity count.

Selection runs the filters' SQL in the database and takes the ``max_candidates`` smallest
nodes that fit (cpus, then RAM, then disk: the order of the partial index on free nodes,
so the database stops after one batch), then runs every filter in Python on that bounded
set and ranks the survivors with the weighers. If a whole batch fails the fine filters,
the next batch is read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core.config import Settings
from portal.core.models import Node
from scheduler import filters, locations, weighers
from scheduler.filters import Filter, first_failure, sql_clauses
from scheduler.request import RequestSpec

# Labels of the filters that decide what a tenant may see at all.
VISIBILITY = ("tenancy", "aggregate_tenancy")


@dataclass(frozen=True)
class SchedulerConfig:
    filters: tuple[Filter, ...] = filters.FILTERS
    weighers: dict[str, float] | None = None
    max_candidates: int = 50

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
    session: Session, spec: RequestSpec, config: SchedulerConfig = DEFAULT
) -> list[Node]:
    """Nodes that pass every filter, best first (at most one batch of them)."""
    # Smallest nodes first: the order of the partial index ix_nodes_free, so the database
    # reads the free nodes of the class in order and stops after one batch. The weighers
    # (best fit on the exact waste among them) rank within the batch.
    base = (
        select(Node)
        .where(*sql_clauses(spec, config.filters))
        .order_by(Node.cpus, Node.memory_mb, Node.local_gb, Node.id)
    )
    batch, offset = config.max_candidates, 0
    while True:
        rows = session.scalars(base.limit(batch).offset(offset)).all()
        if not rows:
            return []
        locs = locations.locations(session, [n.id for n in rows])
        passing = [
            (n, locs[n.id])
            for n in rows
            if first_failure(n, locs[n.id], spec, config.filters) is None
        ]
        if passing:
            return [n for n, _ in _rank(session, passing, spec, config)]
        if len(rows) < batch:
            return []
        offset += batch


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
    session: Session,
    spec: RequestSpec,
    config: SchedulerConfig = DEFAULT,
    tenant_view: bool = False,
) -> NoValidHost:
    """Charge every node to the first filter that rejects it.

    ``tenant_view``: count only the nodes the tenant could ever get (shared pool, its own,
    leased to it), so the message tells a tenant nothing about other tenants' nodes.
    """
    nodes = session.scalars(select(Node)).all()
    locs = locations.locations(session, [n.id for n in nodes])
    labels = [first_failure(n, locs[n.id], spec, config.filters) for n in nodes]
    if tenant_view:
        labels = [label for label in labels if label not in VISIBILITY]
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
