"""Tenant servers: create (quota, scheduling job), list, delete."""

from __future__ import annotations

import ipaddress
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from portal.core import events, ipam, lifecycle
from portal.core.db import new_uuid
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.fsm import InvalidTransition
from portal.core.models import Instance, InstanceVif, IPAllocation, Keypair, Network
from portal.core.states import BUILD, INSTANCE_FSM
from portal.services import flavors, images, placement
from portal.services import networks as network_svc
from portal.services.context import Context
from portal.services.lookup import referenced
from tenants import quotas
from tenants.principal import Principal
from workers import queue as jobqueue


def _loads() -> tuple[Any, ...]:
    """What an instance's output shows: its addresses and its VIFs (network, port,
    addresses with their subnets)."""
    return (
        selectinload(Instance.addresses),
        selectinload(Instance.vifs).selectinload(InstanceVif.addresses),
    )


def visible(principal: Principal) -> Select[Instance]:
    stmt = select(Instance).options(*_loads())
    if not principal.is_admin:
        stmt = stmt.where(Instance.project_id == principal.project_id)
    return stmt


@cache
def _lookup(admin: bool) -> Select[Instance]:
    """``get_visible``'s statement, built once per role (values are bound parameters)."""
    stmt = select(Instance).options(*_loads())
    if not admin:
        stmt = stmt.where(Instance.project_id == bindparam("project_id"))
    return stmt.where(Instance.id == bindparam("ident"))


def get_visible(s: Session, ident: str, principal: Principal) -> Instance:
    inst = s.scalars(
        _lookup(principal.is_admin), {"ident": ident, "project_id": principal.project_id}
    ).first()
    if inst is None:
        raise NotFound(f"instance '{ident}' not found")
    return inst


GIB = 1024**3


def _gb(size: int) -> str:
    return f"{size / GIB:.1f}".removesuffix(".0")


def create(ctx: Context, s: Session, data: dict[str, Any], principal: Principal) -> Instance:
    with referenced("flavor"):
        flavor = flavors.get_visible(s, data["flavor"], principal)
    with referenced("image"):
        image = images.get_visible(s, data["image"], principal)
    if image.status != "active":
        raise Conflict(
            f"image '{image.name}' is '{image.status}': upload its data first", field="image"
        )
    if image.min_disk and image.min_disk > flavor.disk_gb:
        raise Invalid(
            f"image needs {image.min_disk} GB of disk; flavor '{flavor.name}' has {flavor.disk_gb}",
            field="flavor",
        )
    virtual_size = image.virtual_size or 0
    if flavor.disk_gb and virtual_size > flavor.disk_gb * GIB:
        raise Invalid(
            f"image '{image.name}' is a {_gb(virtual_size)} GB disk; "
            f"flavor '{flavor.name}' has {flavor.disk_gb} GB",
            field="flavor",
        )
    keys = _keypairs(s, data.get("key_names") or [], principal)
    wanted = _networks(s, data.get("networks") or [], principal)
    zone = data.get("availability_zone")
    if zone:
        placement.check_zone(s, zone)
    group_id = None
    if data.get("server_group"):
        with referenced("server_group"):
            group_id = placement.get_group(s, data["server_group"], principal).id
    hints = placement.check_hints(s, data.get("scheduler_hints") or {}, principal)
    quotas.reserve(
        s,
        principal.project_id,
        instances=1,
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb,
        defaults=ctx.quota_defaults,
    )
    inst_id = new_uuid()
    inst = Instance(
        id=inst_id,
        # chosen before the INSERT so the row is written once, with its job
        job_id=ctx.enqueue_after_commit(s, "build_instance", inst_id),
        name=data["name"],
        project_id=principal.project_id,
        user_id=principal.user_id,
        flavor_id=flavor.id,
        image_id=image.id,
        status=BUILD,
        task_state="scheduling",
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb,
        ssh_keys=keys,
        user_data=data.get("user_data"),
        meta=dict(data.get("metadata") or {}),
        availability_zone=zone,
        server_group_id=group_id,
        scheduler_hints=hints,
    )
    inst.vifs = [
        InstanceVif(id=new_uuid(), index=i, network_id=net.id, fixed_ip=fixed)
        for i, (net, fixed) in enumerate(wanted)
    ]
    s.add(inst)
    # Fixed IPs are taken now (a clash is the caller's 409); the rest at claim time.
    set_committed_value(inst, "addresses", _fixed_addresses(s, inst, wanted))
    events.record(
        s,
        "instance.created",
        "instance",
        inst.id,
        actor=principal.actor,
        project_id=inst.project_id,
        flavor=flavor.name,
        image=image.id,
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb,
    )
    return inst


def _keypairs(s: Session, names: list[str], principal: Principal) -> list[dict[str, str]]:
    out = []
    for name in names:
        kp = s.scalars(
            select(Keypair).where(Keypair.user_id == principal.user_id, Keypair.name == name)
        ).first()
        if kp is None:
            raise Invalid(f"keypair '{name}' not found", field="key_names")
        out.append({"name": kp.name, "public_key": kp.public_key, "fingerprint": kp.fingerprint})
    return out


MAX_NICS = 8


def _networks(
    s: Session, items: list[dict[str, Any]], principal: Principal
) -> list[tuple[Network, str | None]]:
    """The requested networks (each visible, with an IPv4 subnet, its fixed IP valid), or
    the default: the project's only network, else the provider network."""
    if not items:
        return _default_network(s, principal)
    out: list[tuple[Network, str | None]] = []
    fixed_seen: set[str] = set()
    for i, item in enumerate(items):
        with referenced(f"networks.{i}.network"):
            net = network_svc.get_visible(s, item["network"], principal, lock=True)
        _needs_ipv4(net, f"networks.{i}.network")
        fixed = item.get("fixed_ip")
        if fixed is not None:
            fixed = _check_fixed(net, fixed, f"networks.{i}.fixed_ip")
            if fixed in fixed_seen:
                raise Invalid(f"{fixed} is requested twice", field=f"networks.{i}.fixed_ip")
            fixed_seen.add(fixed)
        out.append((net, fixed))
    return out


def _needs_ipv4(net: Network, field: str) -> None:
    if not any(sub.ip_version == 4 for sub in net.subnets):
        raise Invalid(
            f"network '{net.name}' has no IPv4 subnet: add one before using it", field=field
        )


def _check_fixed(net: Network, fixed: str, field: str) -> str:
    subnet = ipam.subnet_for(net, fixed)
    if subnet is None:
        cidrs = ", ".join(sub.cidr for sub in net.subnets)
        raise Invalid(f"{fixed} is in no subnet of network '{net.name}' ({cidrs})", field=field)
    reason = ipam.unusable(subnet, fixed)
    if reason:
        raise Invalid(reason, field=field)
    return str(ipaddress.ip_address(fixed))


def _default_network(s: Session, principal: Principal) -> list[tuple[Network, str | None]]:
    own = list(
        s.scalars(
            select(Network)
            .where(Network.project_id == principal.project_id)
            .order_by(Network.name)
            .limit(MAX_NICS + 1)
            .with_for_update(read=True, key_share=True)  # as get_visible(lock=True)
        )
    )
    if len(own) > 1:
        names = ", ".join(n.name for n in own)
        raise Conflict(
            f"the project has several networks ({names}): choose in 'networks'",
            errors=[{"field": "networks", "message": "several networks: choose"}],
            choices=[{"id": n.id, "name": n.name} for n in own],
        )
    net = own[0] if own else network_svc.provider(s, lock=True)
    if net is None:
        return []  # no network at all: a server with no address (as before networks)
    _needs_ipv4(net, "networks")
    return [(net, None)]


def _fixed_addresses(
    s: Session, inst: Instance, wanted: list[tuple[Network, str | None]]
) -> list[IPAllocation]:
    if not any(fixed for _, fixed in wanted):
        return []
    s.flush()  # the instance and its VIFs, which the allocations reference
    allocs: list[IPAllocation] = []
    for i, ((net, fixed), vif) in enumerate(zip(wanted, inst.vifs, strict=True)):
        if fixed is None:
            continue
        try:
            allocs += ipam.allocate(s, net, inst.id, fixed, vif.id)
        except (Conflict, Invalid) as exc:
            for error in exc.extra.get("errors", []):
                error["field"] = f"networks.{i}.{error['field']}"
            raise
    return sorted(allocs, key=lambda a: a.address)


def delete(ctx: Context, s: Session, inst: Instance, principal: Principal) -> Instance:
    try:
        lifecycle.fire_instance(s, inst, "delete", actor=principal.actor, task_state="deleting")
    except InvalidTransition as exc:
        raise Conflict(
            f"instance is '{exc.state}'; delete is allowed in: "
            f"{', '.join(s for (s, e) in INSTANCE_FSM.transitions if e == 'delete')}",
            state=exc.state,
        ) from None
    inst.job_id = ctx.enqueue_after_commit(s, "delete_instance", inst.id, retry=jobqueue.LOCK_RETRY)
    return inst
