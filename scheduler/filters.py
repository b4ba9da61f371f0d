"""Scheduler filters: small named predicates over a node and a request.

Each filter answers "may this node host this request?". The order here is the order
used to explain a no-valid-host: each node is charged to the first filter it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from portal.core.models import Node
from portal.core.states import AVAILABLE
from scheduler.request import RequestSpec


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Filter:
    name: str
    passes: Callable[[Node, RequestSpec], bool]


def _ge(prop: str, attr: str) -> Callable[[Node, RequestSpec], bool]:
    def check(node: Node, spec: RequestSpec) -> bool:
        have = _int((node.properties or {}).get(prop))
        return have is not None and have >= getattr(spec, attr)

    return check


def _capabilities(node: Node, spec: RequestSpec) -> bool:
    caps = node.capabilities or {}
    return all(str(caps.get(k)) == v for k, v in spec.capabilities.items())


def _traits(node: Node, spec: RequestSpec) -> bool:
    traits = set(node.traits or [])
    return spec.required_traits <= traits and not (spec.forbidden_traits & traits)


FILTERS: tuple[Filter, ...] = (
    Filter("provision_state", lambda n, s: n.provision_state == AVAILABLE),
    Filter("maintenance", lambda n, s: not n.maintenance),
    Filter("reserved", lambda n, s: n.reservation is None and n.instance_id is None),
    Filter("tenancy", lambda n, s: n.owner is None or n.owner == s.project_id),
    Filter("resource_class", lambda n, s: n.resource_class == s.resource_class),
    Filter("cpus", _ge("cpus", "vcpus")),
    Filter("ram", _ge("memory_mb", "ram_mb")),
    Filter("disk", _ge("local_gb", "disk_gb")),
    Filter(
        "cpu_arch",
        lambda n, s: s.cpu_arch is None or (n.properties or {}).get("cpu_arch") == s.cpu_arch,
    ),
    Filter("capabilities", _capabilities),
    Filter("traits", _traits),
)


def passes_all(node: Node, spec: RequestSpec, filters: tuple[Filter, ...] = FILTERS) -> bool:
    return all(f.passes(node, spec) for f in filters)


def first_failure(
    node: Node, spec: RequestSpec, filters: tuple[Filter, ...] = FILTERS
) -> str | None:
    for f in filters:
        if not f.passes(node, spec):
            return f.name
    return None
