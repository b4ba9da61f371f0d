"""Ranking of candidates: best fit first, so a small flavor does not burn a big box."""

from __future__ import annotations

from portal.core.models import Node
from scheduler.filters import _int
from scheduler.request import RequestSpec


def waste(node: Node, spec: RequestSpec) -> tuple[float, int, str]:
    """Sort key: relative resources left unused, then fewer recent failures, then id."""
    props = node.properties or {}
    parts = []
    for prop, want in (
        ("cpus", spec.vcpus),
        ("memory_mb", spec.ram_mb),
        ("local_gb", spec.disk_gb),
    ):
        have = _int(props.get(prop)) or 0
        parts.append((have - want) / have if have > 0 else 0.0)
    return (sum(parts), node.recent_failures or 0, node.id)


def rank(nodes: list[Node], spec: RequestSpec) -> list[Node]:
    return sorted(nodes, key=lambda n: waste(n, spec))
