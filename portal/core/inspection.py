"""Applying what inspection found to a node: properties, capabilities, discovered ports.

Rules: found values overwrite the node's (the hardware is the truth), values inspection
did not find are kept; ports are created for MACs the node does not have yet and never
deleted (an admin-entered port may be a NIC the BMC cannot see); a MAC that belongs to
another node is skipped and reported, not stolen. Everything applied is recorded next to
the raw inventory, so an admin can tell what came from inspection.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.db import new_uuid, utcnow
from portal.core.models import Node, NodeInventory, Port


def _changes(before: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    return {k: {"old": before.get(k), "new": v} for k, v in found.items() if before.get(k) != v}


def apply(
    session: Session,
    node: Node,
    *,
    source: str,
    properties: dict[str, Any],
    capabilities: dict[str, str],
    macs: list[str],
    raw: dict[str, Any],
    actor: str,
) -> dict[str, Any]:
    """Write the findings to ``node`` (in the caller's transaction); returns what changed."""
    props = dict(node.properties or {})
    caps = dict(node.capabilities or {})
    applied: dict[str, Any] = {
        "properties": _changes(props, properties),
        "capabilities": _changes(caps, capabilities),
        "ports_created": [],
        "ports_skipped": [],
    }
    node.properties = {**props, **properties}
    node.capabilities = {**caps, **capabilities}

    wanted = sorted({m.lower() for m in macs})
    owners = (
        dict(
            session.execute(
                select(Port.address, Port.node_id).where(Port.address.in_(wanted))
            ).all()
        )
        if wanted
        else {}
    )
    for mac in wanted:
        owner = owners.get(mac)
        if owner == node.id:
            continue
        if owner is not None:
            applied["ports_skipped"].append({"address": mac, "reason": f"port of node {owner}"})
            continue
        session.add(Port(id=new_uuid(), node_id=node.id, address=mac, source="inspection"))
        applied["ports_created"].append(mac)

    record = session.get(NodeInventory, node.id)
    if record is None:
        record = NodeInventory(node_id=node.id)
        session.add(record)
    record.source, record.inventory, record.applied = source, raw, applied
    record.collected_at = utcnow()
    events.record(
        session,
        "node.inspected",
        "node",
        node.id,
        actor=actor,
        project_id=node.owner,
        source=source,
        properties=sorted(applied["properties"]),
        capabilities=sorted(applied["capabilities"]),
        ports_created=applied["ports_created"],
        ports_skipped=[p["address"] for p in applied["ports_skipped"]],
    )
    return applied
