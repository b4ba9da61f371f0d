"""What one instance asks of a node, derived from its flavor and project."""

from __future__ import annotations

from dataclasses import dataclass, field

from portal.core.models import Flavor


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

    @classmethod
    def from_flavor(cls, flavor: Flavor, project_id: str) -> RequestSpec:
        caps: dict[str, str] = {}
        required: set[str] = set()
        forbidden: set[str] = set()
        for key, value in (flavor.extra_specs or {}).items():
            if key.startswith("capabilities:"):
                caps[key.removeprefix("capabilities:")] = str(value)
            elif key.startswith("trait:"):
                trait = key.removeprefix("trait:")
                (required if value == "required" else forbidden).add(trait)
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
        )
