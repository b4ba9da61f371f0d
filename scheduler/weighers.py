"""Weighers: rank the nodes that passed every filter, each scaled by a multiplier.

Each weigher scores a candidate (higher is better); scores are normalized to 0..1 over
the candidates (as Nova does), multiplied by the weigher's multiplier from configuration
(``BMS_SCHEDULER_WEIGHERS="best_fit=1,recent_failures=1,soft_group=1,rack_spread=0"``)
and summed. A negative multiplier inverts a weigher: ``rack_spread=-1`` packs racks.
Ties are broken by node id, so the ranking is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from portal.core.models import Node
from scheduler.locations import Location
from scheduler.request import RequestSpec


@dataclass(frozen=True)
class Context:
    """Facts a weigher may need beyond the node: nodes in use per rack."""

    used_per_rack: dict[str, int]


Weigher = Callable[[Node, Location, RequestSpec, Context], float]


def waste(node: Node, spec: RequestSpec) -> float:
    """Share of the node's cpus, RAM and disk the flavor leaves unused (0 = perfect fit)."""
    total = 0.0
    for have, want in (
        (node.cpus, spec.vcpus),
        (node.memory_mb, spec.ram_mb),
        (node.local_gb, spec.disk_gb),
    ):
        if have:
            total += max(have - want, 0) / have
    return total


def _best_fit(node: Node, _loc: Location, spec: RequestSpec, _ctx: Context) -> float:
    return -waste(node, spec)


def _recent_failures(node: Node, _loc: Location, _spec: RequestSpec, _ctx: Context) -> float:
    return -float(node.recent_failures or 0)


def _rack_spread(_node: Node, loc: Location, _spec: RequestSpec, ctx: Context) -> float:
    rack = loc.at("rack")
    return -float(ctx.used_per_rack.get(rack, 0)) if rack is not None else 0.0


def _soft_group(_node: Node, loc: Location, spec: RequestSpec, _ctx: Context) -> float:
    rule = spec.group
    if rule is None or not rule.policy.startswith("soft-"):
        return 0.0
    place = loc.at(rule.scope)
    together = sum(1 for p in rule.member_places if p == place) if place is not None else 0
    return float(together if rule.policy == "soft-affinity" else -together)


WEIGHERS: dict[str, Weigher] = {
    "best_fit": _best_fit,
    "recent_failures": _recent_failures,
    "soft_group": _soft_group,
    "rack_spread": _rack_spread,
}


def configured(spec_text: str) -> dict[str, float]:
    """``"best_fit=1,rack_spread=-0.5"`` → {"best_fit": 1.0, "rack_spread": -0.5}."""
    out: dict[str, float] = {}
    for item in (i.strip() for i in spec_text.split(",")):
        if not item:
            continue
        name, _, mult = item.partition("=")
        name = name.strip()
        if name not in WEIGHERS:
            raise ValueError(f"unknown scheduler weigher {name!r}; known: {', '.join(WEIGHERS)}")
        try:
            out[name] = float(mult) if mult.strip() else 1.0
        except ValueError:
            raise ValueError(f"weigher {name}: multiplier {mult!r} is not a number") from None
    return out


def rank(
    candidates: list[tuple[Node, Location]],
    spec: RequestSpec,
    multipliers: dict[str, float],
    ctx: Context,
) -> list[tuple[Node, Location]]:
    """``candidates`` best first."""
    totals = [0.0] * len(candidates)
    for name, mult in multipliers.items():
        if not mult:
            continue
        weigher = WEIGHERS[name]
        raw = [weigher(n, loc, spec, ctx) for n, loc in candidates]
        low, high = min(raw, default=0.0), max(raw, default=0.0)
        span = high - low
        for i, value in enumerate(raw):
            totals[i] += mult * ((value - low) / span if span else 0.0)
    order = sorted(range(len(candidates)), key=lambda i: (-totals[i], candidates[i][0].id))
    return [candidates[i] for i in order]
