"""Claiming a node: an atomic conditional UPDATE, correct on SQLite and PostgreSQL alike.

Two workers that pick the same candidate both issue the UPDATE; the database lets exactly
one match its WHERE clause, and the loser moves on to its next candidate.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from portal.core.db import utcnow
from portal.core.models import Node, ServerGroup
from portal.core.states import ACTIVE, AVAILABLE, DEPLOYING
from scheduler import filters, locations
from scheduler.request import RequestSpec


def claim(session: Session, node_id: str, instance_id: str, holder: str) -> bool:
    """Reserve ``node_id`` for ``instance_id`` and lock it for ``holder``; False if taken.

    The same statement moves the node to ``deploying``: a bound node is never
    ``available``, not even inside a transaction (CHECK ck_nodes_bound_state). The caller
    records the transition (``lifecycle.fired_node``).
    """
    now = utcnow()
    result = session.execute(
        update(Node)
        .where(
            Node.id == node_id,
            Node.provision_state == AVAILABLE,
            Node.maintenance.is_(False),
            Node.reservation.is_(None),
            Node.instance_id.is_(None),
        )
        .values(
            instance_id=instance_id,
            reservation=holder,
            reserved_at=now,
            provision_state=DEPLOYING,
            target_provision_state=ACTIVE,
            provision_updated_at=now,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def still_fits(session: Session, node_id: str, spec: RequestSpec, instance_id: str) -> bool:
    """Re-check a just-claimed node against the request's server group and hints.

    Two members of one anti-affinity group scheduled at the same moment could each pick
    the last free rack. The group's row is locked first (``FOR UPDATE`` on PostgreSQL;
    SQLite runs one writer at a time), so members of a group are claimed one after the
    other and each sees where the previous ones went.
    """
    if spec.group is None and not spec.place_rules:
        return True
    if spec.group is not None:
        session.execute(
            select(ServerGroup.id).where(ServerGroup.id == spec.group.group_id).with_for_update()
        )
        places = locations.group_places(session, spec.group.group_id, spec.group.scope, instance_id)
        spec = replace(spec, group=replace(spec.group, member_places=tuple(places)))
    node = session.get_one(Node, node_id)
    loc = locations.locations(session, [node_id])[node_id]
    return filters.BY_NAME["server_group"].check(node, loc, spec) is None and (
        filters.BY_NAME["hints"].check(node, loc, spec) is None
    )
