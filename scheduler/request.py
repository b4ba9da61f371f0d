"""What one instance asks of a node: from its flavor, project, zone, group and hints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from portal.core.models import Flavor, Instance, ServerGroup
from scheduler import locations

# Hints a tenant may pass at create: {"same_rack_as": [instance ids], ...}
PLACE_HINTS = {
    "same_node_as": ("node", True),
    "different_node_from": ("node", False),
    "same_rack_as": ("rack", True),
    "different_rack_from": ("rack", False),
    "same_zone_as": ("zone", True),
    "different_zone_from": ("zone", False),
}
# Admin-only hint: put the instance on this node (by name or id).
NODE_HINT = "node_name"
EXACT_SPEC = "scheduler:exact_match"


@dataclass(frozen=True)
class PlaceRule:
    """The node's place at ``scope`` must (same) or must not (different) be in ``places``."""

    label: str
    scope: str
    same: bool
    places: frozenset[str]


@dataclass(frozen=True)
class GroupRule:
    group_id: str
    policy: str
    scope: str
    # one entry per placed member (so soft policies can count)
    member_places: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestSpec:
    project_id: str
    resource_class: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    cpu_arch: str | None = None
    capabilities: dict[str, str] = field(default_factory=dict)
    required_traits: frozenset[str] = frozenset()
    forbidden_traits: frozenset[str] = frozenset()
    exact: bool = False  # node sizes must equal the flavor's (Ironic's one flavor per class)
    availability_zone: str | None = None
    group: GroupRule | None = None
    place_rules: tuple[PlaceRule, ...] = ()
    node_name: str | None = None

    @classmethod
    def from_flavor(cls, flavor: Flavor, project_id: str, **extra: Any) -> RequestSpec:
        caps: dict[str, str] = {}
        required: set[str] = set()
        forbidden: set[str] = set()
        exact = False
        for key, value in (flavor.extra_specs or {}).items():
            if key.startswith("capabilities:"):
                caps[key.removeprefix("capabilities:")] = str(value)
            elif key.startswith("trait:"):
                trait = key.removeprefix("trait:")
                (required if value == "required" else forbidden).add(trait)
            elif key == EXACT_SPEC:
                exact = str(value).strip().lower() in ("true", "1", "yes")
        return cls(
            project_id=project_id,
            resource_class=flavor.resource_class,
            vcpus=flavor.vcpus,
            ram_mb=flavor.ram_mb,
            disk_gb=flavor.disk_gb,
            cpu_arch=flavor.cpu_arch,
            capabilities=caps,
            required_traits=frozenset(required),
            forbidden_traits=frozenset(forbidden),
            exact=exact,
            **extra,
        )

    @classmethod
    def for_instance(cls, session: Session, inst: Instance) -> RequestSpec:
        """The request of ``inst``, with its group's and hints' current placements."""
        flavor = session.get_one(Flavor, inst.flavor_id)
        hints = inst.scheduler_hints or {}
        rules = []
        for name, (scope, same) in PLACE_HINTS.items():
            ids = hints.get(name)
            if ids:
                where = locations.instance_places(session, ids, scope)
                rules.append(PlaceRule(name, scope, same, frozenset(where)))
        group = None
        if inst.server_group_id:
            sg = session.get(ServerGroup, inst.server_group_id)
            if sg is not None:
                members = locations.group_places(session, sg.id, sg.scope, exclude=inst.id)
                group = GroupRule(sg.id, sg.policy, sg.scope, tuple(members))
        return cls.from_flavor(
            flavor,
            inst.project_id,
            availability_zone=inst.availability_zone,
            group=group,
            place_rules=tuple(rules),
            node_name=hints.get(NODE_HINT),
        )
