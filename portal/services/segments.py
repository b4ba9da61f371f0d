"""Segment ranges (admin) and the VLAN ids tenant networks are given from them.

A VLAN id is never handed out twice on one physical network because the database refuses
it (``uq_networks_segment``); the allocator only picks the lowest id that looks free and
retries when a concurrent create took it first (see ``networks.create``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.models import Network, SegmentRange
from portal.core.models.network import VLAN
from portal.services.context import Context
from tenants.principal import Principal

FALLBACK_PHYSNET = "physnet1"


def visible() -> Select[SegmentRange]:
    return select(SegmentRange)


def get(s: Session, range_id: str) -> SegmentRange:
    rng = s.get(SegmentRange, range_id)
    if rng is None:
        raise NotFound(f"segment range '{range_id}' not found")
    return rng


def default_physnet(ctx: Context, s: Session) -> str:
    """Where a network that names no physical network goes: the configured one, else the
    only physical network with VLAN ranges, else ``physnet1``."""
    if ctx.settings.default_physnet:
        return ctx.settings.default_physnet
    physnets = list(
        s.scalars(
            select(SegmentRange.physical_network)
            .where(SegmentRange.network_type == VLAN)
            .distinct()
            .limit(2)
        )
    )
    return physnets[0] if len(physnets) == 1 else FALLBACK_PHYSNET


def _serialize(s: Session, physnet: str) -> None:
    """Range changes of one physical network one at a time, so two overlapping ranges
    cannot both pass the overlap check (SQLite already serializes its writers)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:p))"), {"p": f"segments:{physnet}"})


def create_range(s: Session, data: dict[str, Any], principal: Principal) -> SegmentRange:
    physnet, low, high = data["physical_network"], data["minimum"], data["maximum"]
    if low > high:
        raise Invalid(f"minimum {low} is above maximum {high}", field="minimum")
    _serialize(s, physnet)
    clash = s.scalars(
        select(SegmentRange).where(
            SegmentRange.physical_network == physnet,
            SegmentRange.minimum <= high,
            SegmentRange.maximum >= low,
        )
    ).first()
    if clash is not None:
        raise Conflict(
            f"{low}-{high} overlaps range {clash.minimum}-{clash.maximum} ({clash.id}) "
            f"of physical network '{physnet}'",
            errors=[{"field": "minimum", "message": "overlaps another range"}],
            range=clash.id,
        )
    rng = SegmentRange(
        physical_network=physnet,
        network_type=VLAN,
        minimum=low,
        maximum=high,
        description=data.get("description"),
    )
    s.add(rng)
    s.flush()
    events.record(
        s,
        "segment_range.created",
        "segment_range",
        rng.id,
        actor=principal.actor,
        physical_network=physnet,
        minimum=low,
        maximum=high,
    )
    return rng


def update_range(s: Session, rng: SegmentRange, changes: dict[str, Any]) -> SegmentRange:
    if "description" in changes:
        rng.description = changes["description"]
    return rng


def delete_range(s: Session, rng: SegmentRange, principal: Principal) -> None:
    """Refused (409) while networks hold VLAN ids in the range: they would outlive it."""
    _serialize(s, rng.physical_network)
    users = s.execute(
        select(Network.id, Network.name, Network.segmentation_id)
        .where(
            Network.physical_network == rng.physical_network,
            Network.segmentation_id.between(rng.minimum, rng.maximum),
        )
        .order_by(Network.segmentation_id)
        .limit(20)
    ).all()
    if users:
        raise Conflict(
            f"{len(users)} network(s) use VLAN ids of this range: "
            + ", ".join(f"{n.name} ({n.segmentation_id})" for n in users),
            networks=[{"id": n.id, "name": n.name} for n in users],
        )
    s.delete(rng)
    events.record(
        s,
        "segment_range.deleted",
        "segment_range",
        rng.id,
        actor=principal.actor,
        physical_network=rng.physical_network,
        minimum=rng.minimum,
        maximum=rng.maximum,
    )


def lowest_free(s: Session, physnet: str) -> int | None:
    """The lowest VLAN id of ``physnet``'s ranges no network holds (None: all taken)."""
    ranges = s.execute(
        select(SegmentRange.minimum, SegmentRange.maximum)
        .where(SegmentRange.physical_network == physnet, SegmentRange.network_type == VLAN)
        .order_by(SegmentRange.minimum)
    ).all()
    if not ranges:
        raise Conflict(
            f"physical network '{physnet}' has no VLAN segment range: an admin must create "
            "one (POST /v1/segment-ranges)",
            physical_network=physnet,
        )
    used = set(
        s.scalars(
            select(Network.segmentation_id).where(
                Network.physical_network == physnet, Network.segmentation_id.is_not(None)
            )
        )
    )
    for low, high in ranges:
        free = next((i for i in range(low, high + 1) if i not in used), None)
        if free is not None:
            return free
    return None


def usage(s: Session, rng: SegmentRange) -> int:
    """How many VLAN ids of the range networks hold."""
    return int(
        s.scalar(
            select(func.count())
            .select_from(Network)
            .where(
                Network.physical_network == rng.physical_network,
                Network.segmentation_id.between(rng.minimum, rng.maximum),
            )
        )
        or 0
    )
