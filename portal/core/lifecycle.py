"""The one place that moves nodes and instances between states.

State, target state, last error and the event are always written together, so the
events table is a complete, ordered history of every lifecycle.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.core import events
from portal.core.db import utcnow
from portal.core.fsm import InvalidTransition
from portal.core.models import Instance, Node
from portal.core.states import INSTANCE_FSM, NODE_FSM


def fire_node(
    session: Session,
    node: Node,
    event: str,
    *,
    actor: str = events.SYSTEM,
    error: str | None = None,
    **payload: Any,
) -> str:
    """Apply ``event`` to ``node``; raises :class:`InvalidTransition` if not allowed."""
    before = node.provision_state
    after = NODE_FSM.next_state(before, event)
    node.provision_state = after
    node.target_provision_state = NODE_FSM.target_of(after)
    node.provision_updated_at = utcnow()
    if error is not None:
        node.last_error = error
    elif event in ("manage", "provide", "deploy", "undeploy", "inspect"):
        node.last_error = None  # a new user action starts with a clean slate
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
    return after


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
