"""The reconciler: finds work that nobody will finish and moves it on.

A worker is alive while its lease is (``workers.lease``: a short-TTL Redis key that a
thread of the worker process renews), never longer. Each run:

- fails the jobs that RQ still shows as started by a worker with no live lease (they
  are moved to the failed registry, never retried by RQ: what follows re-enqueues
  what must go on, and every job re-checks the node's state before acting);
- releases the lock of every node whose holder has no live lease, and moves the node
  on (``workers.jobs.recover``: a deploy fails and its node is released, a delete or a
  cleaning is resumed, an inspection or a verification fails);
- does the same for a transient node with no lock and no live job for
  ``BMS_LOCK_STALE_AFTER``;
- fails nodes waiting for an agent with no sign of it for ``BMS_CALLBACK_TIMEOUT``;
- enqueues the job again for a BUILD or DELETING instance whose job is gone;
- puts an image left in `saving` by a dead API process back to `queued`.
Safe to run in several processes at once: every change is a conditional update.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.registry import StartedJobRegistry
from rq.utils import as_text, parse_composite_key
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from portal.core import events, locks
from portal.core.db import utcnow
from portal.core.models import AgentSession, Image, Instance, Node
from portal.core.states import BUILD, INSTANCE_DELETING, NODE_TRANSIENT, NODE_WAITING, POWER_OFF
from workers import lease
from workers import queue as jobqueue
from workers.context import WorkerContext, current
from workers.jobs.instances import release_later
from workers.jobs.recover import fail, recover

log = logging.getLogger(__name__)
ACTOR = "reconciler"
WAITING_JOB = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def _job_alive(ctx: WorkerContext, job_id: str | None) -> bool:
    """Queued or waiting to be, or started by a worker whose lease is live."""
    if not job_id:
        return False
    try:
        job = Job.fetch(job_id, connection=ctx.redis)
        status = job.get_status()
    except Exception:
        return False
    if status in WAITING_JOB:
        return True
    return status == JobStatus.STARTED and bool(lease.live(ctx.redis, [job.worker_name or ""]))


def fail_dead_jobs(ctx: WorkerContext) -> int:
    """Move the started jobs of workers with no live lease to the failed registry."""
    registry = StartedJobRegistry(queue=ctx.queue)
    entries = [as_text(e) for e in ctx.redis.zrange(registry.key, 0, -1)]  # type: ignore[arg-type]
    jobs: list[tuple[str, Job]] = []
    for entry in entries:
        job_id, _ = parse_composite_key(entry)
        try:
            jobs.append((entry, Job.fetch(job_id, connection=ctx.redis)))
        except Exception:  # the job's hash expired: only the entry is left
            ctx.redis.zrem(registry.key, entry)
    alive = lease.live(ctx.redis, [job.worker_name or "" for _, job in jobs])
    failed = 0
    for entry, job in jobs:
        if job.worker_name in alive or job.get_status(refresh=False) != JobStatus.STARTED:
            continue
        with ctx.redis.pipeline() as p:
            record_job_failure(job, f"worker {job.worker_name} died (no live lease)", p)
            p.zrem(registry.key, entry)
            p.execute()
        failed += 1
        log.warning("job %s of dead worker %s marked failed", job.id, job.worker_name)
    return failed


def reconcile() -> dict[str, int]:
    ctx = current()
    now = utcnow()
    stale = now - timedelta(seconds=ctx.settings.lock_stale_after)
    counts = {
        "jobs_failed": fail_dead_jobs(ctx),
        "locks_released": 0,
        "nodes_failed": 0,
        "nodes_resumed": 0,
        "jobs_requeued": 0,
    }

    def tally(outcome: str) -> None:
        if outcome in ("failed", "resumed"):
            counts[f"nodes_{outcome}"] += 1

    with ctx.db.session() as s:
        locked = s.scalars(select(Node).where(Node.reservation.is_not(None))).all()
        alive = lease.live(ctx.redis, [n.reservation or "" for n in locked])
        for node in locked:
            holder = node.reservation or ""
            if holder in alive:
                continue
            locks.release(s, node.id, holder)
            counts["locks_released"] += 1
            reason = f"worker {holder} died during '{node.provision_state}'"
            tally(recover(ctx, s, node, reason, ACTOR))

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
            reason = f"no job is working on this node in '{node.provision_state}'"
            tally(recover(ctx, s, node, reason, ACTOR))

    _expire_waits(ctx, counts)
    counts["uploads_requeued"] = _requeue_stale_uploads(ctx)

    with ctx.db.session() as s:
        pending = s.scalars(
            select(Instance).where(
                Instance.status.in_((BUILD, INSTANCE_DELETING)),
                func.coalesce(Instance.updated_at, Instance.created_at) < stale,
            )
        ).all()
        for inst in pending:
            if _job_alive(ctx, inst.job_id) or _node_busy(ctx, s, inst):
                continue
            job = "build_instance" if inst.status == BUILD else "delete_instance"
            inst.job_id = jobqueue.enqueue(ctx.queue, job, inst.id, retry=jobqueue.LOCK_RETRY)
            counts["jobs_requeued"] += 1
    if any(counts.values()):
        log.info("reconciler: %s", counts)
    return counts


def _requeue_stale_uploads(ctx: WorkerContext) -> int:
    """An image left in ``saving`` by an API process that died mid-upload (a live upload
    shows progress every few seconds, a stalled client is cut off after the read timeout)
    goes back to ``queued`` for another upload, and its partial file is removed."""
    stale = utcnow() - timedelta(seconds=ctx.settings.upload_stale_after)
    with ctx.db.session() as s:
        requeued = s.execute(
            update(Image)
            .where(
                Image.status == "saving",
                func.coalesce(Image.updated_at, Image.created_at) < stale,
            )
            .values(status="queued", updated_at=utcnow())
            .returning(Image.id, Image.owner)
            .execution_options(synchronize_session=False)
        ).all()
        for image_id, owner in requeued:
            events.record(
                s,
                "image.upload_failed",
                "image",
                image_id,
                actor=ACTOR,
                project_id=owner,
                error=f"no upload progress for {ctx.settings.upload_stale_after:g} s "
                "(the uploading API process died)",
            )
    for image_id, _owner in requeued:
        ctx.image_store.discard_partial(image_id)
    return len(requeued)


def _node_busy(ctx: WorkerContext, s: Session, inst: Instance) -> bool:
    """The instance's node has a live job of its own (e.g. a deploy in progress)."""
    if inst.node_id is None:
        return False
    node = s.get(Node, inst.node_id)
    return node is not None and node.job_id != inst.job_id and _job_alive(ctx, node.job_id)


def _expire_waits(ctx: WorkerContext, counts: dict[str, int]) -> None:
    """Waiting for an agent is not a job: it ends with the agent's report or the timeout,
    counted from the last sign of life (the wait began, or the agent's last heartbeat)."""
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
            fail(
                s,
                node,
                f"no sign of the deploy agent for {ctx.settings.callback_timeout:g} s "
                f"in '{node.provision_state}'",
                ACTOR,
            )
            if not release_later(ctx, s, node):  # else its tear-down powers it off
                node.job_id = jobqueue.enqueue(
                    ctx.queue, "set_power", node.id, POWER_OFF, ACTOR, retry=jobqueue.LOCK_RETRY
                )
            counts["nodes_failed"] += 1
