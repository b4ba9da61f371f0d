"""The one place that moves nodes and instances between states.

State, target state, last error and the event are always written together, so the
events table is a complete, ordered history of every lifecycle.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.core import events
from portal.core.db import utcnow
from portal.core.errors import Conflict
from portal.core.fsm import InvalidTransition
from portal.core.models import Instance, Node
from portal.core.states import INSTANCE_FSM, NODE_BOUND, NODE_FSM


def fire_node(
    session: Session,
    node: Node,
    event: str,
    *,
    actor: str = events.SYSTEM,
    error: str | None = None,
    **payload: Any,
) -> str:
    """Apply ``event`` to ``node``; raises :class:`InvalidTransition` if not allowed, and
    :class:`NodeBound` if it would leave a node bound to an instance where it must not be."""
    before = node.provision_state
    after = NODE_FSM.next_state(before, event)
    if node.instance_id is not None and after not in NODE_BOUND:
        raise NodeBound(node, event, after)
    node.provision_state = after
    node.target_provision_state = NODE_FSM.target_of(after)
    node.provision_updated_at = utcnow()
    if error is not None:
        node.last_error = error
    elif event in ("manage", "provide", "deploy", "undeploy", "inspect"):
        node.last_error = None  # a new user action starts with a clean slate
    _record_node(session, node, event, before, after, actor, error, payload)
    return after


def fired_node(
    session: Session, node: Node, event: str, before: str, *, actor: str, **payload: Any
) -> None:
    """Record ``event`` for a transition a conditional UPDATE already wrote (the claim
    moves ``available`` → ``deploying`` and binds the instance in one statement)."""
    after = NODE_FSM.next_state(before, event)
    assert node.provision_state == after, (node.provision_state, after)
    _record_node(session, node, event, before, after, actor, None, payload)


class NodeBound(Conflict):
    """The node is bound to an instance; it cannot go where only a free node may be."""

    def __init__(self, node: Node, event: str, after: str) -> None:
        super().__init__(
            f"cannot '{event}' node {node.id}: it is bound to instance {node.instance_id} "
            f"and a bound node cannot be '{after}'; delete the instance first",
            state=node.provision_state,
            instance_uuid=node.instance_id,
        )


def _record_node(
    session: Session,
    node: Node,
    event: str,
    before: str,
    after: str,
    actor: str,
    error: str | None,
    payload: dict[str, Any],
) -> None:
    events.record(
        session,
        "node.provision_state",
        "node",
        node.id,
        actor=actor,
        project_id=node.owner,
        event=event,
        previous=before,
        state=after,
        target=node.target_provision_state,
        error=error,
        **payload,
    )


def fire_instance(
    session: Session,
    instance: Instance,
    event: str,
    *,
    actor: str = events.SYSTEM,
    task_state: str | None = None,
    fault: dict[str, Any] | None = None,
    **payload: Any,
) -> str:
    before = instance.status
    after = INSTANCE_FSM.next_state(before, event)
    instance.status = after
    instance.task_state = task_state
    if fault is not None:
        instance.fault = fault
    if after == "ACTIVE":
        instance.launched_at = utcnow()
        instance.progress = 100
    elif after == "DELETED":
        instance.terminated_at = utcnow()
    events.record(
        session,
        "instance.status",
        "instance",
        instance.id,
        actor=actor,
        project_id=instance.project_id,
        event=event,
        previous=before,
        status=after,
        fault=(fault or {}).get("message"),
        **payload,
    )
    return after


def set_instance_task(
    session: Session, instance: Instance, task_state: str | None, progress: int
) -> None:
    """Progress within a status (no state change): recorded for the tenant's progress bar."""
    instance.task_state = task_state
    instance.progress = progress
    events.record(
        session,
        "instance.progress",
        "instance",
        instance.id,
        project_id=instance.project_id,
        task_state=task_state,
        progress=progress,
    )


__all__ = ["InvalidTransition", "fire_instance", "fire_node", "set_instance_task"]
