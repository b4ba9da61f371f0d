"""Tenant servers: create (quota, scheduling job), list, delete."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from portal.core import events, lifecycle
from portal.core.db import new_uuid
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.fsm import InvalidTransition
from portal.core.models import Instance, Keypair, Network
from portal.core.states import BUILD, INSTANCE_FSM
from portal.services import flavors, images, placement
from portal.services.context import Context
from portal.services.lookup import referenced
from tenants import quotas
from tenants.principal import Principal
from workers import queue as jobqueue


def visible(principal: Principal) -> Select[Instance]:
    stmt = select(Instance).options(selectinload(Instance.addresses))
    if not principal.is_admin:
        stmt = stmt.where(Instance.project_id == principal.project_id)
    return stmt


@cache
def _lookup(admin: bool) -> Select[Instance]:
    """``get_visible``'s statement, built once per role (values are bound parameters)."""
    stmt = select(Instance).options(selectinload(Instance.addresses))
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
    networks = _networks(s, data.get("networks") or [], principal)
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
        requested_networks=networks,
        availability_zone=zone,
        server_group_id=group_id,
        scheduler_hints=hints,
    )
    s.add(inst)
    set_committed_value(inst, "addresses", [])  # allocated by the build job, not here
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


def _networks(s: Session, ids: list[str], principal: Principal) -> list[str]:
    for ident in ids:
        net = s.get(Network, ident)
        if net is None or not (net.shared or principal.sees_project(net.project_id)):
            raise Invalid(f"network '{ident}' not found", field="networks")
    return ids


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
