"""Per-project quotas, reserved with one conditional UPDATE so parallel creates cannot overshoot."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Integer, bindparam, or_, select, update
from sqlalchemy.orm import Session

from portal.core.errors import QuotaExceeded
from tenants.models import Quota

RESOURCES = ("instances", "vcpus", "ram_mb", "networks", "subnets")


@dataclass(frozen=True)
class Defaults:
    instances: int
    vcpus: int
    ram_mb: int
    networks: int = 10
    subnets: int = 20


def ensure(session: Session, project_id: str, defaults: Defaults) -> Quota:
    quota = session.get(Quota, project_id)
    if quota is None:
        quota = Quota(
            project_id=project_id,
            instances=defaults.instances,
            vcpus=defaults.vcpus,
            ram_mb=defaults.ram_mb,
            networks=defaults.networks,
            subnets=defaults.subnets,
        )
        session.add(quota)
        session.flush()
    return quota


def reserve(
    session: Session,
    project_id: str,
    *,
    instances: int = 0,
    vcpus: int = 0,
    ram_mb: int = 0,
    networks: int = 0,
    subnets: int = 0,
    defaults: Defaults | None = None,
) -> None:
    """Add usage if every limit allows it, atomically; raise :class:`QuotaExceeded` if not.

    Only the resources asked for are checked: a project over its network limit (lowered by
    an admin) can still create instances. With ``defaults``, a project without a quota row
    gets one (the row is looked for only when the UPDATE matched nothing, so the usual case
    is one statement).
    """
    want = {
        "instances": instances,
        "vcpus": vcpus,
        "ram_mb": ram_mb,
        "networks": networks,
        "subnets": subnets,
    }
    params: dict[str, Any] = {f"want_{r}": n for r, n in want.items()}
    params["quota_project"] = project_id
    if session.execute(_reserve_statement(), params).rowcount == 1:  # type: ignore[attr-defined]
        return
    quota = session.execute(
        select(Quota).where(Quota.project_id == project_id)
    ).scalar_one_or_none()
    if quota is None and defaults is not None:
        ensure(session, project_id, defaults)
        return reserve(session, project_id, **want)  # type: ignore[arg-type]
    if quota is None:
        raise QuotaExceeded(f"project {project_id} has no quota", resources=[])
    over = [
        f"{r} (limit {getattr(quota, r)}, in use {getattr(quota, f'{r}_used')}, "
        f"requested {want[r]})"
        for r in RESOURCES
        if want[r] > 0
        and getattr(quota, r) >= 0
        and getattr(quota, r + "_used") + want[r] > getattr(quota, r)
    ]
    raise QuotaExceeded("quota exceeded for " + "; ".join(over), resources=over)


@cache
def _reserve_statement() -> Any:
    """``reserve``'s conditional UPDATE, built once (the amounts are bound parameters)."""
    cols = {r: getattr(Quota, r) for r in RESOURCES}
    used = {r: getattr(Quota, f"{r}_used") for r in RESOURCES}
    want = {r: bindparam(f"want_{r}", type_=Integer) for r in RESOURCES}
    return (
        update(Quota)
        .where(Quota.project_id == bindparam("quota_project"))
        .where(*[or_(cols[r] < 0, want[r] <= 0, used[r] + want[r] <= cols[r]) for r in RESOURCES])
        .values({f"{r}_used": used[r] + want[r] for r in RESOURCES})
        .execution_options(synchronize_session=False)
    )


def release(
    session: Session,
    project_id: str,
    *,
    instances: int = 0,
    vcpus: int = 0,
    ram_mb: int = 0,
    networks: int = 0,
    subnets: int = 0,
) -> None:
    given = {
        "instances": instances,
        "vcpus": vcpus,
        "ram_mb": ram_mb,
        "networks": networks,
        "subnets": subnets,
    }
    values = {f"{r}_used": getattr(Quota, f"{r}_used") - n for r, n in given.items() if n}
    if not values:
        return
    session.execute(
        update(Quota)
        .where(Quota.project_id == project_id)
        .values(values)
        .execution_options(synchronize_session=False)
    )
