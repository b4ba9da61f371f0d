"""Candidate selection and the no-valid-host explanation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from portal.core.models import Node
from portal.core.states import AVAILABLE
from scheduler.filters import FILTERS, first_failure, passes_all
from scheduler.request import RequestSpec
from scheduler.weighers import rank


@dataclass(frozen=True)
class NoValidHost:
    total: int
    removed: dict[str, int]

    @property
    def message(self) -> str:
        reasons = ", ".join(f"{name} {count}" for name, count in self.removed.items() if count)
        return f"No valid host: 0 of {self.total} nodes left ({reasons or 'no nodes enrolled'})"


def candidates(session: Session, spec: RequestSpec) -> list[Node]:
    """Schedulable nodes for ``spec``, best first. Coarse filters run in SQL, fine ones here."""
    rows = session.scalars(
        select(Node).where(
            Node.provision_state == AVAILABLE,
            Node.maintenance.is_(False),
            Node.reservation.is_(None),
            Node.instance_id.is_(None),
            Node.resource_class == spec.resource_class,
            or_(Node.owner.is_(None), Node.owner == spec.project_id),
        )
    ).all()
    return rank([n for n in rows if passes_all(n, spec)], spec)


def explain(session: Session, spec: RequestSpec) -> NoValidHost:
    """Charge every node to the first filter that rejects it."""
    nodes = session.scalars(select(Node)).all()
    counts = Counter(first_failure(n, spec) for n in nodes)
    counts.pop(None, None)
    removed = {f.name: counts.get(f.name, 0) for f in FILTERS}
    return NoValidHost(total=len(nodes), removed=removed)
