"""Instance lifecycle jobs: build (schedule, claim, deploy) and delete (tear down, clean)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from portal.core import events, ipam, lifecycle, locks
from portal.core.models import Instance, Node
from portal.core.states import (
    ACTIVE,
    AVAILABLE,
    BUILD,
    CLEAN_FAILED,
    DELETED,
    DELETING,
    DEPLOY_FAILED,
    DEPLOY_WAIT,
    DEPLOYING,
    INSTANCE_DELETING,
)
from scheduler.claim import claim, still_fits
from scheduler.request import RequestSpec
from scheduler.select import SchedulerConfig, candidates, explain
from tenants import quotas
from workers import queue as jobqueue
from workers.context import WorkerContext, current, holder_name
from workers.drivers.base import NodeTask, StepResult
from workers.jobs.common import LockHold, fail_node, lock_node_in, node_lock
from workers.jobs.nodes import clean_locked
from workers.runner import node_task, run_plan

log = logging.getLogger(__name__)

# A lost race re-reads the candidates; this bounds how often before giving up.
MAX_SCHEDULE_ROUNDS = 5
NO_VALID_HOST = "no valid host"


class DeployAborted(Exception):
    """The tenant deleted the instance while it was being deployed."""


def build_instance(instance_id: str) -> str:
    ctx, holder = current(), holder_name()
    outcome = _schedule(ctx, instance_id, holder)
    if isinstance(outcome, str):
        return outcome  # skipped, or no valid host
    node_id, task = outcome
    return _deploy(ctx, instance_id, node_id, holder, task)


def continue_deploy(node_id: str) -> str:
    """Resume a deploy that waited for an agent callback."""
    ctx, holder = current(), holder_name()
    with ctx.db.session() as s:
        node = s.get(Node, node_id)
        if node is None or node.provision_state != DEPLOY_WAIT or node.instance_id is None:
            return "skipped"
        if not locks.acquire(s, node_id, holder):
            raise locks.NodeLocked(node_id)
        lifecycle.fire_node(s, node, "resume", actor=holder)
        instance_id = node.instance_id
    return _deploy(ctx, instance_id, node_id, holder)


def _scheduler_config() -> SchedulerConfig:
    return SchedulerConfig.from_settings(current().settings)


def _schedule(
    ctx: WorkerContext, instance_id: str, holder: str
) -> tuple[str, NodeTask | None] | str:
    """Rank the nodes and claim the best, in one transaction; on no candidate, put the
    instance in ERROR with the reasons. Returns the node and the deploy's task, or why
    there is nothing to deploy: "skipped" (no such instance, or no longer ``BUILD``) or
    "no valid host".

    The first round's transaction also reads the instance first: a retried job whose
    claim survived takes the node's lock back in it and resumes the deploy (no task: the
    plan reads the node itself).

    The first round locks its batch of candidates and skips nodes other workers are
    claiming at that moment (``FOR UPDATE SKIP LOCKED`` on PostgreSQL): concurrent
    builds take different nodes instead of racing for the best one. Later rounds do not
    skip: a node another worker held but did not take must never end in a false
    no-valid-host.
    """
    config = _scheduler_config()
    spec: RequestSpec | None = None
    for round_ in range(MAX_SCHEDULE_ROUNDS):
        with ctx.db.session() as s:
            inst = s.get(Instance, instance_id)
            if inst is None or inst.status != BUILD:
                # round 0: nothing to build; later: deleted while we were choosing
                return "skipped" if round_ == 0 else NO_VALID_HOST
            if round_ == 0 and inst.node_id is not None:
                # A retried job: the claim survived, take the lock back and resume the plan.
                if not locks.acquire(s, inst.node_id, holder):
                    raise locks.NodeLocked(inst.node_id)
                return inst.node_id, None
            spec = RequestSpec.for_instance(s, inst)
            ranked = candidates(s, spec, config, skip_locked=round_ == 0)
            if not ranked and round_ > 0:
                break
            for node in ranked:
                if not claim(s, node.id, instance_id, holder):
                    continue  # taken since we read it: next candidate
                if not still_fits(s, node.id, spec, instance_id):
                    s.rollback()  # a group member or hinted instance just moved: re-rank
                    break
                return _claimed(ctx, s, node, instance_id, holder) or NO_VALID_HOST
    with ctx.db.session() as s:
        inst = s.get_one(Instance, instance_id)
        if inst.status != BUILD:
            return NO_VALID_HOST
        spec = spec or RequestSpec.for_instance(s, inst)
        full, tenant = explain(s, spec, config)
        lifecycle.fire_instance(
            s,
            inst,
            "error",
            actor=holder,
            # the message is the tenant's view; admins also get every node's reason
            fault={
                "code": "no_valid_host",
                "message": tenant.message,
                "details": {"message": full.message, "total": full.total, "removed": full.removed},
            },
        )
        # For admins only (no project): every node's reason, for monitoring and capacity.
        events.record(
            s,
            "scheduler.no_valid_host",
            "instance",
            inst.id,
            actor=holder,
            project=inst.project_id,
            message=full.message,
            total=full.total,
            removed=full.removed,
        )
    return NO_VALID_HOST


def _claimed(
    ctx: WorkerContext, s: Session, node: Node, instance_id: str, holder: str
) -> tuple[str, NodeTask] | None:
    """The claim's bookkeeping, in its transaction: deploy fired, addresses, progress.

    Without autoflush, the reads in between do not write the node, the instance and the
    events piecemeal: each goes out once, at commit.
    """
    with s.no_autoflush:
        s.refresh(node)  # the claim's UPDATE went around the ORM
        # Lock the instance row so a concurrent delete either sees the claim or wins.
        inst = s.get_one(Instance, instance_id, with_for_update=True, populate_existing=True)
        if inst.status != BUILD:  # deleted while we were choosing
            s.rollback()
            return None
        lifecycle.fired_node(s, node, "deploy", AVAILABLE, actor=holder, instance_id=instance_id)
        inst.node_id = node.id
        _allocate_addresses(s, inst)
        lifecycle.set_instance_task(s, inst, "scheduled", 5)
        return node.id, node_task(ctx, s, node)


def _allocate_addresses(session: Session, inst: Instance) -> None:
    # Each VIF (requested network) gets what it lacks; the result is all the instance holds.
    set_committed_value(inst, "addresses", ipam.allocate_vifs(session, inst.id))


def _deploy(
    ctx: WorkerContext, instance_id: str, node_id: str, holder: str, task: NodeTask | None = None
) -> str:
    def progress(s: Session, node: Node, step: str, done: int, total: int) -> None:
        inst = s.get_one(Instance, instance_id)
        if inst.status == INSTANCE_DELETING:
            raise DeployAborted(f"instance {instance_id} was deleted during deploy")
        lifecycle.set_instance_task(s, inst, step, 10 + 90 * done // total - (done == total))

    def end(s: Session, node: Node, result: StepResult) -> None:
        if result == "wait":
            lifecycle.fire_node(s, node, "wait", actor=holder)
        else:
            lifecycle.fire_node(s, node, "done", actor=holder)
            node.recent_failures = 0
            inst = s.get_one(Instance, instance_id)
            lifecycle.fire_instance(s, inst, "active", actor=holder, node_id=node_id)
        locks.release_loaded(node, holder)

    try:
        return run_plan(ctx, node_id, "deploy", on_step=progress, on_end=end, task=task)
    except Exception as exc:
        reason = f"deploy failed: {exc}"
        fail_node(ctx, node_id, reason, holder, power_off=True)
        with ctx.db.session() as s:
            inst = s.get_one(Instance, instance_id)
            if inst.status == BUILD:
                lifecycle.fire_instance(
                    s,
                    inst,
                    "error",
                    actor=holder,
                    fault={"code": "deploy_failed", "message": reason},
                )
            locks.release(s, node_id, holder)
            release_later(ctx, s, s.get_one(Node, node_id))
        return "failed"


def release_later(ctx: WorkerContext, s: Session, node: Node) -> bool:
    """Enqueue ``release_failed_deploy`` for a node whose deploy just failed, unless the
    operator keeps failed nodes for inspection (``BMS_RELEASE_FAILED_DEPLOYS=0``)."""
    if not ctx.settings.release_failed_deploys:
        return False
    if node.provision_state != DEPLOY_FAILED or node.instance_id is None:
        return False
    node.job_id = jobqueue.enqueue(
        ctx.queue, "release_failed_deploy", node.id, node.instance_id, retry=jobqueue.LOCK_RETRY
    )
    return True


def release_failed_deploy(node_id: str, instance_id: str) -> str:
    """Give the node of a failed deploy back to the pool, as Nova does with Ironic: tear it
    down and clean it (the partly written disk is wiped), and detach it from the instance,
    which stays in ERROR with its fault until the tenant deletes it."""
    ctx, holder = current(), holder_name()
    with ctx.db.session() as s:
        node = lock_node_in(s, node_id, holder)
        if (
            node is None
            or node.provision_state not in (DEPLOY_FAILED, DELETING)
            or node.instance_id != instance_id
        ):
            s.rollback()  # deleted, released, or retried by an admin since: nothing to do
            return "skipped"
        inst = s.get_one(Instance, instance_id)
        if node.provision_state == DEPLOY_FAILED:  # else: resuming an interrupted release
            why = node.last_error
            lifecycle.fire_node(s, node, "undeploy", actor=holder, instance_id=instance_id)
            node.last_error = why  # not an admin's new action: the failure stays on record
        task = node_task(ctx, s, node)
    with node_lock(ctx, node_id, holder, acquired=True) as hold:
        return _tear_down(ctx, inst.id, node_id, hold, task, release_only=True)


def delete_instance(instance_id: str) -> str:
    """Tear down the instance's node (networks, power), then clean it back to available."""
    ctx, holder = current(), holder_name()
    with ctx.db.session() as s:
        inst = s.get(Instance, instance_id)
        if inst is None or inst.status == DELETED:
            return "skipped"
        node = lock_node_in(s, inst.node_id, holder) if inst.node_id else None
        if node is None or node.instance_id != instance_id:
            s.rollback()
            with ctx.db.session() as s2:  # never reached a node (e.g. no valid host)
                _mark_deleted(s2, s2.get_one(Instance, instance_id), holder)
            return "deleted"
        node_id: str = node.id
        if not _start_undeploy(s, node, inst, holder):
            return "deleted"
        task = node_task(ctx, s, node)
    with node_lock(ctx, node_id, holder, acquired=True) as hold:
        return _tear_down(ctx, instance_id, node_id, hold, task)


def _start_undeploy(s: Session, node: Node, inst: Instance, holder: str) -> bool:
    """Move the locked node towards ``deleting``; False if there is nothing to tear down."""
    if node.provision_state in (ACTIVE, DEPLOY_FAILED):
        lifecycle.fire_node(s, node, "undeploy", actor=holder, instance_id=inst.id)
    elif node.provision_state in (DEPLOYING, DEPLOY_WAIT):  # a deploy that was cut off
        lifecycle.fire_node(s, node, "fail", actor=holder, error="deploy interrupted")
        lifecycle.fire_node(s, node, "undeploy", actor=holder, instance_id=inst.id)
    elif node.provision_state == CLEAN_FAILED:
        # An earlier tear-down failed: free the tenant's instance now and leave the node,
        # with its last_error, to an admin (provide retries the cleaning).
        node.instance_id = None
        _mark_deleted(s, inst, holder)
        locks.release(s, node.id, holder)
        return False
    return True


def _tear_down(
    ctx: WorkerContext,
    instance_id: str,
    node_id: str,
    hold: LockHold,
    task: NodeTask,
    release_only: bool = False,
) -> str:
    """``release_only``: the node leaves a failed instance, which stays in ERROR."""
    holder = hold.holder

    def end(s: Session, node: Node, result: StepResult) -> None:
        node.instance_id = None
        lifecycle.fire_node(s, node, "done", actor=holder)  # deleting → cleaning
        inst = s.get_one(Instance, instance_id)
        if release_only:
            inst.node_id = None
        else:
            _mark_deleted(s, inst, holder)

    try:
        run_plan(ctx, node_id, "teardown", on_end=end, task=task)
    except Exception as exc:
        fail_node(ctx, node_id, f"tear-down failed: {exc}", holder, power_off=False)
        with ctx.db.session() as s:
            inst = s.get_one(Instance, instance_id)
            lifecycle.fire_instance(
                s,
                inst,
                "error",
                actor=holder,
                fault={"code": "delete_failed", "message": f"tear-down failed: {exc}"},
            )
        return "failed"
    task.instance = {}  # the node is no longer the instance's
    clean_locked(node_id, hold, task)
    return "deleted"


def _mark_deleted(s: Session, inst: Instance, holder: str) -> None:
    if inst.status != INSTANCE_DELETING:
        lifecycle.fire_instance(s, inst, "delete", actor=holder)
    released = ipam.release(s, inst.id)
    quotas.release(s, inst.project_id, instances=1, vcpus=inst.vcpus, ram_mb=inst.ram_mb)
    lifecycle.fire_instance(s, inst, "deleted", actor=holder, released_addresses=released)
