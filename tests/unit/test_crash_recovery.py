"""Crash recovery: a worker's death is known from its lease, and every node it held moves on.

Each test puts a node where a ``kill -9``'d worker leaves it (locked by a holder with no
live lease, its job still "started" in RQ), runs the reconciler, then the jobs it
enqueued, and checks the node and its instance end stable and consistent.
"""

from __future__ import annotations

from typing import Any

from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import select

from portal.core import lifecycle
from portal.core.db import utcnow
from portal.core.models import Event, Instance, Node
from portal.services import instances
from tests.helpers import make_available, seed_world
from workers import lease
from workers import queue as jobqueue
from workers.context import current
from workers.jobs.common import fail_node
from workers.jobs.reconcile import reconcile

DEAD = "bms-host-killed-4242"


def _who(s: Any) -> Any:
    from tenants.models import User
    from tenants.principal import Principal

    alice = s.query(User).filter_by(name="alice").one()
    return Principal(alice.id, alice.name, alice.project_id, alice.role)


def _instance(ctx: Any, w: Any, name: str = "vm") -> str:
    with ctx.session() as s:
        inst = instances.create(
            ctx, s, {"name": name, "flavor": w.flavor, "image": w.image}, _who(s)
        )
        return str(inst.id)


def _lock(node: Node, holder: str = DEAD) -> None:
    node.reservation = holder
    node.reserved_at = utcnow()  # just now: a dead lease is enough, no waiting for age


def _state(ctx: Any, node_id: str, inst_id: str | None = None) -> tuple[Any, ...]:
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        out: tuple[Any, ...] = (node.provision_state, node.reservation, node.instance_id)
        if inst_id:
            inst = s.get_one(Instance, inst_id)
            out += (inst.status, inst.node_id, (inst.fault or {}).get("code"))
        return out


def test_a_registered_rq_worker_without_lease_is_dead_at_once(ctx, jobs):
    """RQ's worker key (TTL = job timeout) no longer keeps a dead worker's lock alive."""
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    dead = SimpleWorker([ctx.queue], connection=ctx.queue.connection, name=DEAD)
    if not dead.connection.exists(dead.key):  # as RQ leaves it: registered for an hour
        dead.register_birth()
    inst_id = _instance(ctx, w)
    ctx.queue.empty()  # its build job died with the worker
    with ctx.session() as s:  # the claim the dead worker made
        node, inst = s.get_one(Node, node_id), s.get_one(Instance, inst_id)
        lifecycle.fire_node(s, node, "deploy", actor=DEAD, instance_id=inst_id)
        inst.node_id, node.instance_id = node_id, inst_id
        _lock(node)
    counts = reconcile()
    assert counts["locks_released"] == 1 and counts["nodes_failed"] == 1
    assert _state(ctx, node_id, inst_id) == (
        "deploy failed",
        None,
        inst_id,
        "ERROR",
        node_id,
        "worker_lost",
    )
    jobs()  # release_failed_deploy: tear-down and cleaning
    assert _state(ctx, node_id, inst_id) == ("available", None, None, "ERROR", None, "worker_lost")
    assert reconcile()["locks_released"] == 0


def test_a_live_lease_keeps_the_lock(ctx, jobs):
    (node_id,) = make_available(ctx, 1, jobs)
    held = lease.Lease(ctx.settings.redis_url, "bms-alive-1", ttl=20, heartbeat=5)
    held.renew()
    try:
        with ctx.session() as s:
            node = s.get_one(Node, node_id)
            lifecycle.fire_node(s, node, "manage")
            lifecycle.fire_node(s, node, "provide")
            _lock(node, "bms-alive-1")
        assert reconcile()["locks_released"] == 0
        assert _state(ctx, node_id) == ("cleaning", "bms-alive-1", None)
    finally:
        held.stop()
    assert reconcile()["locks_released"] == 1  # stopped cleanly: dead at once


def test_interrupted_delete_is_resumed_to_deleted_and_available(ctx, jobs):
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    inst_id = _instance(ctx, w)
    jobs()
    with ctx.session() as s:  # DELETE arrived, the worker fired undeploy, then died
        inst, node = s.get_one(Instance, inst_id), s.get_one(Node, node_id)
        lifecycle.fire_instance(s, inst, "delete")
        lifecycle.fire_node(s, node, "undeploy", actor=DEAD, instance_id=inst_id)
        _lock(node)
    ctx.queue.empty()
    counts = reconcile()
    assert counts["nodes_resumed"] == 1 and counts["nodes_failed"] == 0
    jobs()
    assert _state(ctx, node_id, inst_id) == ("available", None, None, "DELETED", node_id, None)


def test_interrupted_clean_is_resumed_then_bounded(ctx, jobs):
    (node_id,) = make_available(ctx, 1, jobs)
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        lifecycle.fire_node(s, node, "manage")
        lifecycle.fire_node(s, node, "provide")
        _lock(node)
    assert reconcile()["nodes_resumed"] == 1
    jobs()
    assert _state(ctx, node_id) == ("available", None, None)
    with ctx.session() as s:
        assert "clean_resumes" not in (s.get_one(Node, node_id).driver_internal_info or {})
    # a cleaning that kills its worker every time: resumed BMS_CLEAN_RESUMES times, then failed
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        lifecycle.fire_node(s, node, "manage")
        lifecycle.fire_node(s, node, "provide")
    outcomes = []
    for _ in range(ctx.settings.clean_resumes + 1):
        with ctx.session() as s:
            _lock(s.get_one(Node, node_id))
        counts = reconcile()
        outcomes.append((counts["nodes_resumed"], counts["nodes_failed"]))
        ctx.queue.empty()  # the resumed job dies too
    assert outcomes == [(1, 0)] * ctx.settings.clean_resumes + [(0, 1)]
    assert _state(ctx, node_id)[:2] == ("clean failed", None)


def test_interrupted_inspect_and_verify_fail(ctx, jobs):
    a, b = make_available(ctx, 2, jobs)
    with ctx.session() as s:
        na, nb = s.get_one(Node, a), s.get_one(Node, b)
        lifecycle.fire_node(s, na, "manage")
        lifecycle.fire_node(s, na, "inspect")
        lifecycle.fire_node(s, nb, "manage")
        lifecycle.fire_node(s, nb, "manage")  # re-verify
        _lock(na)
        _lock(nb)
    assert reconcile()["nodes_failed"] == 2
    assert _state(ctx, a)[:2] == ("inspect failed", None)
    assert _state(ctx, b)[:2] == ("enroll", None)


def test_started_job_of_a_dead_worker_is_failed_not_retried(ctx, jobs):
    """RQ keeps a killed worker's job "started" (and would retry it, later, against a node
    that moved on): the reconciler fails it at once and never counts it as live."""
    job_id = jobqueue.enqueue(ctx.queue, "clean_node", "no-such-node", retry=jobqueue.LOCK_RETRY)
    job = Job.fetch(job_id, connection=ctx.queue.connection)
    registry = StartedJobRegistry(queue=ctx.queue)
    with ctx.queue.connection.pipeline() as p:
        job.prepare_for_execution(DEAD, p)
        p.zadd(registry.key, {f"{job_id}:exec1": 10**10})
        p.execute()
    ctx.queue.remove(job_id)  # a worker dequeued it
    assert job.get_status() == JobStatus.STARTED
    assert reconcile()["jobs_failed"] == 1
    assert job.get_status() == JobStatus.FAILED
    assert job_id in FailedJobRegistry(queue=ctx.queue)
    assert ctx.queue.connection.zcard(registry.key) == 0
    assert len(ctx.queue) == 0  # not retried


def test_a_late_job_never_fails_a_node_that_moved_on(ctx, jobs):
    """The reconciler took over; the presumed-dead worker's failure path is a no-op."""
    (node_id,) = make_available(ctx, 1, jobs)
    current.cache_clear()
    fail_node(current(), node_id, "boom", DEAD, power_off=True)
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert (node.provision_state, node.last_error) == ("available", None)
        kinds = s.scalars(select(Event.type).where(Event.resource_id == node_id)).all()
    assert "node.failed" not in kinds


def test_a_bound_node_cannot_be_provided_or_managed(ctx, jobs):
    """Issue 16: provide made a `clean failed` node available while its instance_id still
    named a DELETING instance. The domain refuses (409 naming the instance)."""
    from portal.core.errors import Conflict
    from portal.services import identity, nodes

    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    inst_id = _instance(ctx, w)
    jobs()
    with ctx.session() as s:  # the tear-down failed: clean failed, still bound
        inst, node = s.get_one(Instance, inst_id), s.get_one(Node, node_id)
        lifecycle.fire_instance(s, inst, "delete")
        lifecycle.fire_node(s, node, "undeploy")
        lifecycle.fire_node(s, node, "fail", error="tear-down failed")
    for target in ("provide", "manage"):
        with ctx.session() as s:
            try:
                nodes.provision(ctx, s, s.get_one(Node, node_id), target, identity.SYSTEM)
            except Conflict as exc:
                assert inst_id in exc.detail and exc.extra["instance_uuid"] == inst_id
            else:
                raise AssertionError(f"{target} of a bound node was accepted")
    assert _state(ctx, node_id)[::2] == ("clean failed", inst_id)
    # the tenant's delete frees the instance; then the node can be cleaned
    with ctx.session() as s:
        ctx.queue.empty()
    from workers.jobs.instances import delete_instance

    current.cache_clear()
    assert delete_instance(inst_id) == "deleted"
    assert _state(ctx, node_id, inst_id)[::2] == ("clean failed", None, node_id)
    with ctx.session() as s:
        nodes.provision(ctx, s, s.get_one(Node, node_id), "provide", identity.SYSTEM)
    jobs()
    assert _state(ctx, node_id)[0] == "available"


def test_the_database_refuses_a_bound_available_node(ctx, jobs):
    import pytest
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    (node_id,) = make_available(ctx, 1, jobs)
    with pytest.raises(IntegrityError), ctx.session() as s:
        s.execute(update(Node).where(Node.id == node_id).values(instance_id=DEAD))
    with ctx.session() as s:  # allowed where a bound node may be
        s.execute(
            update(Node)
            .where(Node.id == node_id)
            .values(instance_id=DEAD, provision_state="clean failed")
        )
