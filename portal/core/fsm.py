"""A state machine declared as data: ``{(state, event): next_state}``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class InvalidTransition(Exception):
    """``event`` is not allowed in ``state``; ``allowed`` lists what is."""

    def __init__(self, machine: str, state: str, event: str, allowed: list[str]) -> None:
        self.machine, self.state, self.event, self.allowed = machine, state, event, allowed
        allowed_text = ", ".join(allowed) or "none"
        super().__init__(
            f"cannot '{event}' a {machine} in state '{state}'; allowed: {allowed_text}"
        )


@dataclass(frozen=True)
class StateMachine:
    name: str
    transitions: Mapping[tuple[str, str], str]
    # Where a transient state is heading: shown as the target while the work runs.
    targets: Mapping[str, str] = field(default_factory=dict)
    # Events that only the system (workers) may fire, never a user through the API.
    internal_events: frozenset[str] = frozenset()

    @property
    def states(self) -> set[str]:
        return {s for s, _ in self.transitions} | set(self.transitions.values())

    def allowed(self, state: str, *, include_internal: bool = False) -> list[str]:
        return sorted(
            e
            for (s, e) in self.transitions
            if s == state and (include_internal or e not in self.internal_events)
        )

    def next_state(self, state: str, event: str) -> str:
        try:
            return self.transitions[(state, event)]
        except KeyError:
            raise InvalidTransition(
                self.name, state, event, self.allowed(state, include_internal=True)
            ) from None

    def target_of(self, state: str) -> str | None:
        return self.targets.get(state)
