"""How many servers of a flavor could be placed right now (``GET /v1/flavors/{id}/capacity``).

For a tenant: the nodes that pass every filter for its project, capped by what its quota
still allows. For an admin: every node that could host the flavor for some tenant, by zone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from portal.core.models import Flavor
from portal.services.context import Context
from scheduler.request import RequestSpec
from scheduler.select import VISIBILITY, SchedulerConfig, capacity
from tenants.models import Quota
from tenants.principal import Principal


def quota_allows(s: Session, project_id: str, flavor: Flavor) -> int | None:
    """How many more instances of ``flavor`` the project's quota admits; None: no limit."""
    quota = s.get(Quota, project_id)
    if quota is None:
        return None
    room = []
    for limit, used, per in (
        (quota.instances, quota.instances_used, 1),
        (quota.vcpus, quota.vcpus_used, flavor.vcpus),
        (quota.ram_mb, quota.ram_mb_used, flavor.ram_mb),
    ):
        if limit >= 0 and per > 0:
            room.append(max(limit - used, 0) // per)
    return min(room) if room else None


def for_flavor(ctx: Context, s: Session, flavor: Flavor, principal: Principal) -> dict[str, Any]:
    config = SchedulerConfig.from_settings(ctx.settings)
    spec = RequestSpec.from_flavor(flavor, principal.project_id)
    if principal.is_admin:
        every_tenant = tuple(f for f in config.filters if f.name not in VISIBILITY)
        per_zone = capacity(s, spec, replace(config, filters=every_tenant))
        total = sum(per_zone.values())
        return {
            "flavor": flavor.id,
            "nodes": total,
            "instances": total,
            "quota_allows": None,
            "by_zone": {zone or "": count for zone, count in sorted(per_zone.items(), key=str)},
        }
    per_zone = capacity(s, spec, config)
    nodes = sum(per_zone.values())
    allows = quota_allows(s, principal.project_id, flavor)
    return {
        "flavor": flavor.id,
        "nodes": nodes,
        "quota_allows": allows,
        "instances": nodes if allows is None else min(nodes, allows),
    }
