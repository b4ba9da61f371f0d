"""Aggregates (admin) and server groups (tenants): where nodes are, where servers may go."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.models import (
    Aggregate,
    AggregateNode,
    AggregateProject,
    Instance,
    ServerGroup,
)
from portal.core.states import DELETED
from portal.services.lookup import node_by_ident, referenced
from scheduler.request import NODE_HINT, PLACE_HINTS
from tenants.models import Project
from tenants.principal import Principal


def _flush_unique(s: Session, what: str, name: str) -> None:
    try:
        with s.begin_nested():
            s.flush()
    except IntegrityError:
        raise Conflict(f"{what} named '{name}' already exists", field="name") from None


# -- aggregates -----------------------------------------------------------------------------


def aggregate_doc(s: Session, agg: Aggregate) -> dict[str, Any]:
    nodes = s.scalars(select(AggregateNode.node_id).where(AggregateNode.aggregate_id == agg.id))
    projects = s.scalars(
        select(AggregateProject.project_id).where(AggregateProject.aggregate_id == agg.id)
    )
    return {
        "id": agg.id,
        "name": agg.name,
        "availability_zone": agg.availability_zone,
        "metadata": agg.meta,
        "nodes": sorted(nodes),
        "projects": sorted(projects),
        "created_at": agg.created_at,
        "updated_at": agg.updated_at,
    }


def create_aggregate(s: Session, data: dict[str, Any], principal: Principal) -> Aggregate:
    agg = Aggregate(
        name=data["name"],
        availability_zone=data.get("availability_zone"),
        meta=data.get("metadata") or {},
    )
    s.add(agg)
    _flush_unique(s, "aggregate", agg.name)
    _set_members(s, agg, data.get("nodes"), data.get("projects"))
    events.record(s, "aggregate.created", "aggregate", agg.id, actor=principal.actor, **data)
    return agg


def update_aggregate(
    s: Session, agg: Aggregate, data: dict[str, Any], principal: Principal
) -> Aggregate:
    if "name" in data:
        agg.name = data["name"]
        _flush_unique(s, "aggregate", agg.name)
    if "availability_zone" in data:
        agg.availability_zone = data["availability_zone"]
    if "metadata" in data:
        agg.meta = data["metadata"]
    _set_members(s, agg, data.get("nodes"), data.get("projects"))
    events.record(s, "aggregate.updated", "aggregate", agg.id, actor=principal.actor, **data)
    return agg


def _set_members(
    s: Session, agg: Aggregate, nodes: list[str] | None, projects: list[str] | None
) -> None:
    """Replace the node and project lists that are given (None: leave as is)."""
    if nodes is not None:
        with referenced("nodes"):
            ids = {node_by_ident(s, ident).id for ident in nodes}
        s.execute(delete(AggregateNode).where(AggregateNode.aggregate_id == agg.id))
        s.add_all(AggregateNode(aggregate_id=agg.id, node_id=i) for i in sorted(ids))
    if projects is not None:
        for pid in projects:
            if s.get(Project, pid) is None:
                raise Invalid(f"project '{pid}' not found", field="projects")
        s.execute(delete(AggregateProject).where(AggregateProject.aggregate_id == agg.id))
        s.add_all(
            AggregateProject(aggregate_id=agg.id, project_id=p) for p in sorted(set(projects))
        )
    s.flush()


def delete_aggregate(s: Session, agg: Aggregate, principal: Principal) -> None:
    events.record(s, "aggregate.deleted", "aggregate", agg.id, actor=principal.actor, name=agg.name)
    s.delete(agg)


# -- server groups --------------------------------------------------------------------------


def group_doc(s: Session, group: ServerGroup) -> dict[str, Any]:
    members = s.scalars(
        select(Instance.id).where(Instance.server_group_id == group.id, Instance.status != DELETED)
    )
    return {
        "id": group.id,
        "name": group.name,
        "project_id": group.project_id,
        "policy": group.policy,
        "scope": group.scope,
        "members": sorted(members),
        "created_at": group.created_at,
    }


def visible_groups(principal: Principal) -> Any:
    stmt = select(ServerGroup)
    if not principal.is_admin:
        stmt = stmt.where(ServerGroup.project_id == principal.project_id)
    return stmt


def get_group(s: Session, ident: str, principal: Principal) -> ServerGroup:
    group = s.scalars(visible_groups(principal).where(ServerGroup.id == ident)).first()
    if group is None:
        raise NotFound(f"server group '{ident}' not found")
    return group


def create_group(s: Session, data: dict[str, Any], principal: Principal) -> ServerGroup:
    group = ServerGroup(
        name=data["name"],
        project_id=principal.project_id,
        policy=data["policy"],
        scope=data.get("scope") or "node",
    )
    s.add(group)
    _flush_unique(s, "server group", group.name)
    events.record(
        s,
        "server_group.created",
        "server_group",
        group.id,
        actor=principal.actor,
        project_id=group.project_id,
        name=group.name,
        policy=group.policy,
        scope=group.scope,
    )
    return group


def delete_group(s: Session, group: ServerGroup, principal: Principal) -> None:
    live = s.scalars(
        select(Instance.id).where(Instance.server_group_id == group.id, Instance.status != DELETED)
    ).first()
    if live is not None:
        raise Conflict(f"server group '{group.name}' still has servers (e.g. {live})")
    events.record(
        s,
        "server_group.deleted",
        "server_group",
        group.id,
        actor=principal.actor,
        project_id=group.project_id,
        name=group.name,
    )
    s.delete(group)


# -- what a create may ask for ---------------------------------------------------------------


def zones(s: Session) -> list[str]:
    found = s.scalars(
        select(Aggregate.availability_zone)
        .where(Aggregate.availability_zone.is_not(None))
        .distinct()
    ).all()
    return sorted(z for z in found if z)


def check_zone(s: Session, zone: str) -> None:
    known = zones(s)
    if zone not in known:
        raise Invalid(
            f"availability zone '{zone}' does not exist",
            field="availability_zone",
            allowed=known,
        )


def check_hints(s: Session, hints: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """Hints as stored: known names, instance ids the caller may see, node_name for admins."""
    out: dict[str, Any] = {}
    for name, value in hints.items():
        if name == NODE_HINT:
            if not principal.is_admin:
                raise Invalid("the node_name hint is for admins", field="scheduler_hints")
            if not isinstance(value, str):
                raise Invalid("node_name must be a node name or id", field="scheduler_hints")
            with referenced("scheduler_hints"):
                out[name] = node_by_ident(s, value).id
            continue
        if name not in PLACE_HINTS:
            raise Invalid(
                f"unknown scheduler hint '{name}'",
                field="scheduler_hints",
                allowed=[*PLACE_HINTS, NODE_HINT],
            )
        ids = [value] if isinstance(value, str) else value
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
            raise Invalid(f"{name} must be a server id or a list of them", field="scheduler_hints")
        for ident in ids:
            stmt = select(Instance.id).where(Instance.id == ident)
            if not principal.is_admin:
                stmt = stmt.where(Instance.project_id == principal.project_id)
            if s.scalars(stmt).first() is None:
                raise Invalid(f"{name}: server '{ident}' not found", field="scheduler_hints")
        out[name] = ids
    return out
