"""What happens to a node whose operation lost its worker (the reconciler, an admin breaking
the lock): each transient state goes where somebody will move it on.

| state                         | outcome                                                  |
|-------------------------------|----------------------------------------------------------|
| deploying, wait call-back     | deploy failed; a BUILD instance → ERROR (worker_lost) and |
|                               | the node is released (tear-down, cleaning); a DELETING    |
|                               | instance gets its delete job again                        |
| deleting                      | the delete (or the failed deploy's release) is resumed    |
| cleaning                      | resumed (``BMS_CLEAN_RESUMES`` times), then clean failed  |
| verifying                     | enroll                                                    |
| inspecting, inspect wait      | inspect failed                                            |
| clean wait                    | left to the agent's callback or ``BMS_CALLBACK_TIMEOUT``  |

Called with the node loaded in the caller's transaction and its lock already released;
the jobs it enqueues are idempotent and re-check the node's state before doing anything.
"""

from __future__ import annotations

from typing import Protocol

from rq import Queue
from sqlalchemy.orm import Session

from portal.core import agent_sessions, lifecycle
from portal.core.config import Settings
from portal.core.models import Instance, Node
from portal.core.states import (
    BUILD,
    CLEANING,
    DELETING,
    DEPLOY_WAIT,
    DEPLOYING,
    INSPECT_WAIT,
    INSPECTING,
    INSTANCE_DELETING,
    VERIFYING,
)
from workers import queue as jobqueue
from workers.jobs.instances import release_later
from workers.steps import forget_netboot

CLEAN_RESUMES_KEY = "clean_resumes"


class Jobs(Protocol):
    """What recovery needs of a context: a worker's or the portal's."""

    settings: Settings

    @property
    def queue(self) -> Queue: ...


def recover(ctx: Jobs, s: Session, node: Node, reason: str, actor: str) -> str:
    """Move ``node`` on; returns what was done: "failed", "resumed" or "none"."""
    state = node.provision_state
    inst = s.get(Instance, node.instance_id) if node.instance_id else None
    if state in (DEPLOYING, DEPLOY_WAIT):
        fail(s, node, reason, actor)
        if inst is not None and inst.status == INSTANCE_DELETING:
            inst.job_id = node.job_id = _enqueue(ctx, "delete_instance", inst.id)
        else:
            release_later(ctx, s, node)  # type: ignore[arg-type]
        return "failed"
    if state == DELETING and inst is not None:
        if inst.status == INSTANCE_DELETING:
            inst.job_id = node.job_id = _enqueue(ctx, "delete_instance", inst.id)
        else:  # a failed deploy's release: the instance stays in ERROR
            node.job_id = _enqueue(ctx, "release_failed_deploy", node.id, inst.id)
        return "resumed"
    if state == CLEANING:
        info = dict(node.driver_internal_info or {})
        done = int(info.get(CLEAN_RESUMES_KEY, 0))
        if done < ctx.settings.clean_resumes:
            info[CLEAN_RESUMES_KEY] = done + 1
            node.driver_internal_info = info
            node.job_id = _enqueue(ctx, "clean_node", node.id)
            return "resumed"
        fail(s, node, f"{reason} (cleaning resumed {done} times already)", actor)
        return "failed"
    if state in (VERIFYING, INSPECTING, INSPECT_WAIT, DELETING):
        fail(s, node, reason, actor)
        return "failed"
    return "none"  # stable, or clean wait: the agent's callback or its timeout moves it


def fail(s: Session, node: Node, reason: str, actor: str) -> None:
    """Fire ``fail`` with ``reason``; a BUILD instance on the node goes to ERROR."""
    info = dict(node.driver_internal_info or {})
    forget_netboot(info)  # the operation is over: its boot script and agent token die
    info.pop(CLEAN_RESUMES_KEY, None)
    node.driver_internal_info = info
    agent_sessions.end(s, node.id)
    lifecycle.fire_node(s, node, "fail", actor=actor, error=reason)
    if node.instance_id:
        inst = s.get(Instance, node.instance_id)
        if inst is not None and inst.status == BUILD:
            lifecycle.fire_instance(
                s, inst, "error", actor=actor, fault={"code": "worker_lost", "message": reason}
            )


def _enqueue(ctx: Jobs, job: str, *args: str) -> str:
    return jobqueue.enqueue(ctx.queue, job, *args, retry=jobqueue.LOCK_RETRY)
