"""Flavors (admin) and what a tenant may see of them."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.models import Flavor, FlavorAccess, Instance
from scheduler import operators
from scheduler.request import EXACT_SPEC
from tenants.principal import Principal

TRAIT_VALUES = ("required", "forbidden")


def check_extra_specs(specs: dict[str, Any]) -> None:
    for key, value in specs.items():
        if key.startswith("trait:"):
            if value not in TRAIT_VALUES:
                raise Invalid(
                    f"'{key}' must be one of {', '.join(TRAIT_VALUES)}, not {value!r}",
                    field=f"extra_specs.{key}",
                )
        elif key.startswith("capabilities:"):
            problem = operators.validate(str(value))
            if problem is not None:
                raise Invalid(f"'{key}': {problem}", field=f"extra_specs.{key}")
        elif key == EXACT_SPEC:
            if str(value).lower() not in ("true", "false"):
                raise Invalid(f"'{key}' must be 'true' or 'false'", field=f"extra_specs.{key}")
        else:
            raise Invalid(
                f"unknown extra spec '{key}': keys start with 'capabilities:' or 'trait:',"
                f" or are '{EXACT_SPEC}'",
                field=f"extra_specs.{key}",
            )


def visible(principal: Principal) -> Select[Flavor]:
    return _visible(principal.project_id, admin=principal.is_admin)


def _visible(project_id: Any, *, admin: bool) -> Select[Flavor]:
    stmt = select(Flavor)
    if not admin:
        stmt = stmt.where(
            Flavor.disabled.is_(False),
            or_(
                Flavor.is_public.is_(True),
                exists().where(
                    FlavorAccess.flavor_id == Flavor.id,
                    FlavorAccess.project_id == project_id,
                ),
            ),
        )
    return stmt


@cache
def _lookup(admin: bool) -> Select[Flavor]:
    """``get_visible``'s statement, built once per role (values are bound parameters)."""
    ident = bindparam("ident", type_=Flavor.id.type)
    stmt = _visible(bindparam("project_id"), admin=admin)
    return stmt.where(or_(Flavor.id == ident, Flavor.name == ident))


def get_visible(s: Session, ident: str, principal: Principal) -> Flavor:
    flavor = s.scalars(
        _lookup(principal.is_admin), {"ident": ident, "project_id": principal.project_id}
    ).first()
    if flavor is None:
        raise NotFound(f"flavor '{ident}' not found")
    return flavor


def create(s: Session, data: dict[str, Any], actor: Principal) -> Flavor:
    check_extra_specs(data.get("extra_specs") or {})
    flavor = Flavor(**data)
    s.add(flavor)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"a flavor named '{data['name']}' already exists", field="name") from None
    events.record(s, "flavor.created", "flavor", flavor.id, actor=actor.actor, name=flavor.name)
    return flavor


def update(s: Session, flavor: Flavor, changes: dict[str, Any], actor: Principal) -> Flavor:
    if "extra_specs" in changes:
        check_extra_specs(changes["extra_specs"] or {})
    for k, v in changes.items():
        setattr(flavor, k, v)
    events.record(
        s, "flavor.updated", "flavor", flavor.id, actor=actor.actor, fields=sorted(changes)
    )
    return flavor


def delete(s: Session, flavor: Flavor, actor: Principal) -> None:
    in_use = s.scalar(
        select(Instance.id)
        .where(Instance.flavor_id == flavor.id, Instance.status != "DELETED")
        .limit(1)
    )
    if in_use:
        raise Conflict(f"flavor '{flavor.name}' is used by instance {in_use}; disable it instead")
    events.record(s, "flavor.deleted", "flavor", flavor.id, actor=actor.actor, name=flavor.name)
    s.delete(flavor)


def add_access(s: Session, flavor: Flavor, project_id: str, actor: Principal) -> None:
    if flavor.is_public:
        raise Conflict("flavor is public: access lists apply to private flavors only")
    if s.get(FlavorAccess, (flavor.id, project_id)) is None:
        s.add(FlavorAccess(flavor_id=flavor.id, project_id=project_id))
        events.record(
            s, "flavor.access_added", "flavor", flavor.id, actor=actor.actor, project_id=project_id
        )


def remove_access(s: Session, flavor: Flavor, project_id: str, actor: Principal) -> None:
    row = s.get(FlavorAccess, (flavor.id, project_id))
    if row is None:
        raise NotFound(f"project '{project_id}' has no access to flavor '{flavor.name}'")
    s.delete(row)
    events.record(
        s, "flavor.access_removed", "flavor", flavor.id, actor=actor.actor, project_id=project_id
    )


def access_list(s: Session, flavor: Flavor) -> list[str]:
    return list(
        s.scalars(select(FlavorAccess.project_id).where(FlavorAccess.flavor_id == flavor.id))
    )
