"""Where nodes are: zone and rack from their aggregates, and who an aggregate is for.

A node's zone is the ``availability_zone`` of an aggregate it belongs to, its rack the
``rack`` metadata of one (row and room likewise). Nodes in aggregates restricted to
projects are offered only to those projects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from portal.core.models import Aggregate, AggregateNode, AggregateProject, Instance, Node
from portal.core.states import DELETED

LOCATION_KEYS = ("rack", "row", "room")


@dataclass(frozen=True)
class Location:
    node_id: str
    zone: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    # Projects this node is restricted to by its aggregates; None: not restricted.
    projects: frozenset[str] | None = None

    def at(self, scope: str) -> str | None:
        """The node's place at ``scope`` (node, rack, zone, row, room); None if unknown."""
        if scope == "node":
            return self.node_id
        if scope == "zone":
            return self.zone
        return self.meta.get(scope)


def locations(
    session: Session, node_ids: Iterable[str], every_node: bool = False
) -> dict[str, Location]:
    """Locations of ``node_ids`` (every node gets one, empty when in no aggregate).

    ``every_node``: the ids are all the nodes there are; read the memberships without an
    ``IN`` list (10,000 bound parameters cost more than the rows).
    """
    ids = list(node_ids)
    zone: dict[str, str] = {}
    meta: dict[str, dict[str, str]] = {i: {} for i in ids}
    restricted: dict[str, set[str]] = {}
    if ids:
        # one query: each membership, with the aggregate's allowed projects (if any)
        rows = session.execute(
            select(
                AggregateNode.node_id,
                Aggregate.availability_zone,
                Aggregate.meta,
                AggregateProject.project_id,
            )
            .join(Aggregate, Aggregate.id == AggregateNode.aggregate_id)
            .outerjoin(AggregateProject, AggregateProject.aggregate_id == Aggregate.id)
            .where(true() if every_node else AggregateNode.node_id.in_(ids))
        ).all()
        for node_id, az, agg_meta, project_id in rows:
            if node_id not in meta:  # a node created since the caller read its list
                continue
            if az:
                zone.setdefault(node_id, az)
            for key in LOCATION_KEYS:
                value = (agg_meta or {}).get(key)
                if value is not None:
                    meta[node_id].setdefault(key, str(value))
            if project_id is not None:
                restricted.setdefault(node_id, set()).add(project_id)
    return {
        i: Location(
            i,
            zone.get(i),
            meta[i],
            frozenset(restricted[i]) if i in restricted else None,
        )
        for i in ids
    }


def instance_places(session: Session, instance_ids: Iterable[str], scope: str) -> set[str]:
    """The places (at ``scope``) of the nodes these live instances are on."""
    return set(_live_places(session, Instance.id.in_(list(instance_ids)), scope))


def group_places(
    session: Session, group_id: str, scope: str, exclude: str | None = None
) -> list[str]:
    """Places (at ``scope``) of the group's live members with a node, one per member."""
    return _live_places(session, Instance.server_group_id == group_id, scope, exclude)


def _live_places(
    session: Session, which: ColumnElement[bool], scope: str, exclude: str | None = None
) -> list[str]:
    """One place per live instance matching ``which`` that has a node."""
    rows = session.execute(
        select(Instance.id, Instance.node_id).where(
            which, Instance.node_id.is_not(None), Instance.status != DELETED
        )
    ).all()
    node_ids = [n for i, n in rows if i != exclude and n]
    locs = locations(session, set(node_ids))
    return [p for p in (locs[n].at(scope) for n in node_ids) if p is not None]


def used_per_rack(session: Session) -> dict[str, int]:
    """How many nodes hold an instance, per rack (for spreading or packing racks)."""
    rows = session.execute(
        select(AggregateNode.node_id, Aggregate.meta)
        .join(Aggregate, Aggregate.id == AggregateNode.aggregate_id)
        .join(Node, Node.id == AggregateNode.node_id)
        .where(Node.instance_id.is_not(None))
    ).all()
    rack_of: dict[str, str] = {}
    for node_id, meta in rows:
        rack = (meta or {}).get("rack")
        if rack is not None:
            rack_of.setdefault(node_id, str(rack))
    counts: dict[str, int] = {}
    for rack in rack_of.values():
        counts[rack] = counts.get(rack, 0) + 1
    return counts
