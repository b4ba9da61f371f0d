"""Networks: the provider network, tenants' VLAN networks, admins' shared/provider ones.

Tenants create VLAN networks in their own project; the VLAN id comes from the segment
ranges of the physical network (``segments.lowest_free``): insert, and on a clash with a
concurrent create (the unique key refuses the id) pick again. Admins may also make flat
networks and name any VLAN id, inside the tenant ranges or not (as Neutron lets them): the
database still refuses an id another network holds.
"""

from __future__ import annotations

import ipaddress
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound
from portal.core.models import Instance, InstanceVif, IPAllocation, Network, Subnet
from portal.core.models.network import FLAT, VLAN
from portal.services import segments
from portal.services.context import Context
from portal.services.lookup import Ambiguous
from tenants import quotas
from tenants.models import Project
from tenants.principal import Principal

PROVIDER = "provider"
ADMIN_FIELDS = ("shared", "physical_network", "segmentation_id", "project_id")
# Picks of a VLAN id before giving up: each failed one means another create took an id.
SEGMENT_ATTEMPTS = 100


def ensure_provider(ctx: Context, s: Session) -> Network:
    net = s.scalars(
        select(Network).where(Network.name == PROVIDER, Network.project_id.is_(None))
    ).first()
    if net is not None:
        return net
    cfg = ctx.settings
    cidr = ipaddress.ip_network(cfg.provider_network_cidr)
    start, _, end = cfg.provider_network_pool.partition("-")
    for addr in (start, end, cfg.provider_network_gateway):
        if ipaddress.ip_address(addr.strip()) not in cidr:
            raise ValueError(f"{addr} is not in {cidr} (check BMS_PROVIDER_* settings)")
    net = Network(name=PROVIDER, network_type=FLAT, physical_network="physnet1", shared=True)
    net.subnets.append(
        Subnet(
            name=f"{PROVIDER}-v4",
            ip_version=cidr.version,
            cidr=str(cidr),
            gateway_ip=cfg.provider_network_gateway,
            allocation_pools=[{"start": start.strip(), "end": end.strip()}],
            dns_nameservers=[],
            host_routes=[],
        )
    )
    s.add(net)
    s.flush()
    events.record(s, "network.created", "network", net.id, name=net.name, cidr=str(cidr))
    return net


def provider(s: Session, *, lock: bool = False) -> Network | None:
    """The network instances get when they ask for none and their project has none
    (``lock``: as in ``get_visible``)."""
    stmt = (
        select(Network)
        .where(Network.project_id.is_(None), Network.shared.is_(True))
        .order_by(Network.created_at, Network.id)
        .limit(1)
    )
    if lock:
        stmt = stmt.with_for_update(read=True, key_share=True)
    return s.scalars(stmt).first()


def visible(principal: Principal) -> Select[Network]:
    return _visible(principal.project_id, admin=principal.is_admin)


def _visible(pid: Any, *, admin: bool) -> Select[Network]:
    stmt = select(Network)
    if not admin:
        stmt = stmt.where(or_(Network.project_id == pid, Network.shared.is_(True)))
    return stmt


@cache
def _lookup(admin: bool, by_name: bool = False) -> Select[Network]:
    stmt = _visible(bindparam("project_id"), admin=admin)
    if by_name:
        return stmt.where(Network.name == bindparam("ident")).order_by(Network.id).limit(10)
    return stmt.where(Network.id == bindparam("ident"))


def get_visible(s: Session, ident: str, principal: Principal, *, lock: bool = False) -> Network:
    """A network the caller can see, by id or by name (a name several visible networks
    share is :class:`Ambiguous`). ``lock``: share-lock the row (PostgreSQL) so it cannot
    be deleted before the caller's transaction ends (instances naming it)."""
    params = {"ident": ident, "project_id": principal.project_id}
    for by_name in (False, True):
        stmt = _lookup(principal.is_admin, by_name)
        if lock:
            stmt = stmt.with_for_update(read=True, key_share=True)
        found = list(s.scalars(stmt, params))
        if len(found) == 1:
            return found[0]
        if found:
            raise Ambiguous("network", ident, [n.id for n in found])
    raise NotFound(f"network '{ident}' not found")


def check_owner(net: Network, principal: Principal) -> None:
    """Shared networks are visible to every tenant but only their owner (or an admin)
    changes them."""
    if not principal.is_admin and net.project_id != principal.project_id:
        raise Forbidden(f"network '{net.name}' is shared with you: only its owner may change it")


def _name_taken(s: Session, name: str, project_id: str | None, but: str | None = None) -> bool:
    owner = Network.project_id.is_(None) if project_id is None else Network.project_id == project_id
    stmt = select(Network.id).where(Network.name == name, owner)
    if but is not None:
        stmt = stmt.where(Network.id != but)
    return s.scalars(stmt.limit(1)).first() is not None


def _name_conflict(name: str) -> Conflict:
    return Conflict(
        f"a network named '{name}' already exists in this project",
        errors=[{"field": "name", "message": "already taken"}],
    )


def _try_insert(s: Session, net: Network) -> bool:
    """INSERT in a savepoint: False if a unique key refused it (the caller says which)."""
    try:
        with s.begin_nested():
            s.add(net)
        return True
    except IntegrityError:
        return False


def _segment_owner(s: Session, physnet: str, segment: int | None) -> Network | None:
    if segment is None:
        stmt = select(Network).where(
            Network.physical_network == physnet, Network.network_type == FLAT
        )
    else:
        stmt = select(Network).where(
            Network.physical_network == physnet, Network.segmentation_id == segment
        )
    return s.scalars(stmt.limit(1)).first()


def _check_admin_fields(data: dict[str, Any], principal: Principal) -> None:
    if principal.is_admin:
        return
    for key in ADMIN_FIELDS:
        if key in data:
            raise Forbidden(f"only admins may set '{key}'", field=key)
    if data.get("network_type", VLAN) != VLAN:
        raise Forbidden("only admins may create flat networks", field="network_type")


def create(ctx: Context, s: Session, data: dict[str, Any], principal: Principal) -> Network:
    _check_admin_fields(data, principal)
    project_id: str | None = principal.project_id
    if principal.is_admin:
        project_id = data.get("project_id")
        if project_id is not None and s.get(Project, project_id) is None:
            raise Invalid(f"project '{project_id}' not found", field="project_id")
    kind = data.get("network_type", VLAN)
    physnet = data.get("physical_network") or segments.default_physnet(ctx, s)
    segment = data.get("segmentation_id")
    if kind == FLAT and segment is not None:
        raise Invalid("a flat network has no segmentation_id", field="segmentation_id")
    name = data["name"]
    if _name_taken(s, name, project_id):
        raise _name_conflict(name)
    if project_id is not None:
        quotas.reserve(s, project_id, networks=1, defaults=ctx.quota_defaults)
    fields = {
        "name": name,
        "project_id": project_id,
        "network_type": kind,
        "physical_network": physnet,
        "shared": bool(data.get("shared", False)),
        "description": data.get("description"),
        "mtu": data.get("mtu"),
    }
    net = _insert(s, fields, physnet, segment, allocate=kind == VLAN and segment is None)
    # Provider attributes are admins' business: only in events tenants cannot read.
    segment_info = (
        {"physical_network": physnet, "segmentation_id": net.segmentation_id}
        if project_id is None
        else {}
    )
    events.record(
        s,
        "network.created",
        "network",
        net.id,
        actor=principal.actor,
        project_id=project_id,
        name=name,
        network_type=kind,
        shared=net.shared,
        **segment_info,
    )
    return net


def _insert(
    s: Session, fields: dict[str, Any], physnet: str, segment: int | None, *, allocate: bool
) -> Network:
    for _ in range(SEGMENT_ATTEMPTS):
        if allocate:
            segment = segments.lowest_free(s, physnet)
            if segment is None:
                raise Conflict(
                    f"no free VLAN id left on physical network '{physnet}' "
                    "(its segment ranges are exhausted)",
                    physical_network=physnet,
                )
        net = Network(**fields, segmentation_id=segment)
        if _try_insert(s, net):
            return net
        # Which key refused it? (read after the clash: the winner has committed)
        if _name_taken(s, fields["name"], fields["project_id"]):
            raise _name_conflict(fields["name"])
        owner = _segment_owner(s, physnet, segment)
        if not allocate:
            what = f"VLAN {segment}" if segment is not None else "its flat network"
            field = "segmentation_id" if segment is not None else "physical_network"
            raise Conflict(
                f"physical network '{physnet}' already has {what}"
                + (
                    f" (network {owner.id})"
                    if owner is not None and owner.project_id is None
                    else ""
                ),
                errors=[{"field": field, "message": "taken"}],
            )
        # a concurrent create took the id first: pick again
    raise Conflict(f"could not get a VLAN id on '{physnet}': too many concurrent creates; retry")


def update(s: Session, net: Network, changes: dict[str, Any], principal: Principal) -> Network:
    check_owner(net, principal)
    renamed = "name" in changes and changes["name"] != net.name
    if renamed and _name_taken(s, changes["name"], net.project_id, but=net.id):
        raise _name_conflict(changes["name"])
    for key in ("name", "description"):
        if key in changes:
            setattr(net, key, changes[key])
    try:
        with s.begin_nested():
            s.flush()
    except IntegrityError:
        raise _name_conflict(changes.get("name", net.name)) from None
    events.record(
        s,
        "network.updated",
        "network",
        net.id,
        actor=principal.actor,
        project_id=net.project_id,
        fields=sorted(changes),
    )
    return net


def users(s: Session, network_id: str) -> list[dict[str, str]]:
    """The live instances with a VIF on the network (at most 20), by id and name."""
    rows = s.execute(
        select(Instance.id, Instance.name)
        .join(InstanceVif, InstanceVif.instance_id == Instance.id)
        .where(InstanceVif.network_id == network_id, Instance.status != "DELETED")
        .distinct()
        .order_by(Instance.name, Instance.id)
        .limit(20)
    ).all()
    return [{"id": r.id, "name": r.name} for r in rows]


def in_use_conflict(what: str, found: list[dict[str, str]]) -> Conflict:
    named = ", ".join(f"{u['name']} ({u['id']})" for u in found)
    return Conflict(f"{what} is in use by instance(s): {named}", instances=found)


def delete(ctx: Context, s: Session, net: Network, principal: Principal) -> None:
    """Refused (409, naming the instances) while a live instance has a VIF on it."""
    check_owner(net, principal)
    # Lock the row: an instance create naming it waits (PostgreSQL share lock), then finds
    # it gone; or it committed first and is seen here.
    s.execute(select(Network.id).where(Network.id == net.id).with_for_update())
    found = users(s, net.id)
    if found:
        raise in_use_conflict(f"network '{net.name}'", found)
    # What deleted instances left behind is history, not use.
    s.execute(sql_delete(IPAllocation).where(IPAllocation.network_id == net.id))
    s.execute(sql_delete(InstanceVif).where(InstanceVif.network_id == net.id))
    subnets = list(net.subnets)
    for subnet in subnets:
        events.record(
            s,
            "subnet.deleted",
            "subnet",
            subnet.id,
            actor=principal.actor,
            project_id=net.project_id,
            network_id=net.id,
            cidr=subnet.cidr,
        )
    s.delete(net)
    if net.project_id is not None:
        quotas.release(s, net.project_id, networks=1, subnets=len(subnets))
    events.record(
        s,
        "network.deleted",
        "network",
        net.id,
        actor=principal.actor,
        project_id=net.project_id,
        name=net.name,
    )
