"""The reconciler: finds work that nobody will finish and moves it on.

- a node locked by a worker that no longer exists: the lock is released, and a node
  left in a transient state is failed (deploying → deploy failed, cleaning → clean
  failed, verifying → enroll) with a ``last_error`` saying why;
- a transient node with no lock and no job that will pick it up: failed the same way;
- a node waiting for its deploy agent with no heartbeat for ``BMS_CALLBACK_TIMEOUT``:
  failed and powered off;
- a deploy failed in any of these ways gives its node back (``release_failed_deploy``:
  tear-down and cleaning), unless ``BMS_RELEASE_FAILED_DEPLOYS`` is off;
- an instance in BUILD or DELETING whose job vanished: its job is enqueued again
  (jobs are idempotent).
Safe to run in several processes at once: every change is a conditional update.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from rq.job import Job, JobStatus
from rq.worker import Worker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.core import agent_sessions, lifecycle, locks
from portal.core.db import utcnow
from portal.core.models import AgentSession, Instance, Node
from portal.core.states import BUILD, INSTANCE_DELETING, NODE_TRANSIENT, NODE_WAITING, POWER_OFF
from workers import queue as jobqueue
from workers.context import WorkerContext, current
from workers.jobs.instances import release_later
from workers.steps import forget_netboot

log = logging.getLogger(__name__)
ACTOR = "reconciler"
LIVE_JOB = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def _job_alive(ctx: WorkerContext, job_id: str | None) -> bool:
    if not job_id:
        return False
    try:
        return Job.fetch(job_id, connection=ctx.redis).get_status() in LIVE_JOB
    except Exception:
        return False


def reconcile() -> dict[str, int]:
    ctx = current()
    live = {w.name for w in Worker.all(connection=ctx.redis)}
    stale = utcnow() - timedelta(seconds=ctx.settings.lock_stale_after)
    counts = {"locks_released": 0, "nodes_failed": 0, "jobs_requeued": 0}

    with ctx.db.session() as s:
        for node in s.scalars(select(Node).where(Node.reservation.is_not(None))):
            holder = node.reservation or ""
            dead = holder not in live and (node.reserved_at is None or node.reserved_at < stale)
            if not dead:
                continue
            locks.release(s, node.id, holder)
            counts["locks_released"] += 1
            if node.provision_state in NODE_TRANSIENT:
                _fail(s, node, f"worker {holder} died during '{node.provision_state}'")
                release_later(ctx, s, node)
                counts["nodes_failed"] += 1

    with ctx.db.session() as s:
        orphans = s.scalars(
            select(Node).where(
                Node.provision_state.in_(NODE_TRANSIENT - NODE_WAITING),
                Node.reservation.is_(None),
                Node.provision_updated_at < stale,
            )
        ).all()
        for node in orphans:
            if _job_alive(ctx, node.job_id):
                continue
            _fail(s, node, f"no job is working on this node in '{node.provision_state}'")
            release_later(ctx, s, node)
            counts["nodes_failed"] += 1

    # Waiting for an agent is not a job: it ends with the agent's report or the timeout,
    # counted from the last sign of life (the wait began, or the agent's last heartbeat).
    expired = utcnow() - timedelta(seconds=ctx.settings.callback_timeout)
    with ctx.db.session() as s:
        waiting = s.execute(
            select(Node, AgentSession.last_heartbeat_at)
            .outerjoin(AgentSession, AgentSession.node_id == Node.id)
            .where(
                Node.provision_state.in_(NODE_WAITING),
                Node.reservation.is_(None),
                Node.provision_updated_at < expired,
            )
        ).all()
        for node, heartbeat in waiting:
            if heartbeat is not None and heartbeat >= expired:
                continue
            _fail(
                s,
                node,
                f"no sign of the deploy agent for {ctx.settings.callback_timeout:g} s "
                f"in '{node.provision_state}'",
            )
            if not release_later(ctx, s, node):  # else its tear-down powers it off
                node.job_id = jobqueue.enqueue(
                    ctx.queue, "set_power", node.id, POWER_OFF, ACTOR, retry=jobqueue.LOCK_RETRY
                )
            counts["nodes_failed"] += 1

    with ctx.db.session() as s:
        pending = s.scalars(
            select(Instance).where(
                Instance.status.in_((BUILD, INSTANCE_DELETING)),
                func.coalesce(Instance.updated_at, Instance.created_at) < stale,
            )
        ).all()
        for inst in pending:
            if _job_alive(ctx, inst.job_id):
                continue
            job = "build_instance" if inst.status == BUILD else "delete_instance"
            inst.job_id = jobqueue.enqueue(ctx.queue, job, inst.id, retry=jobqueue.LOCK_RETRY)
            counts["jobs_requeued"] += 1
    if any(counts.values()):
        log.info("reconciler: %s", counts)
    return counts


def _fail(s: Session, node: Node, reason: str) -> None:
    info = dict(node.driver_internal_info or {})
    forget_netboot(info)  # the operation is over: its boot script and agent token die
    node.driver_internal_info = info
    agent_sessions.end(s, node.id)
    lifecycle.fire_node(s, node, "fail", actor=ACTOR, error=reason)
    if node.instance_id:
        inst = s.get(Instance, node.instance_id)
        if inst is not None and inst.status == BUILD:
            lifecycle.fire_instance(
                s, inst, "error", actor=ACTOR, fault={"code": "worker_lost", "message": reason}
            )
