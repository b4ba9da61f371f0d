"""The reconciler moves on nodes whose lock holder died or whose job vanished."""

from __future__ import annotations

from datetime import timedelta

from portal.core import lifecycle
from portal.core.db import utcnow
from portal.core.models import Instance, Node
from portal.services import identity, instances
from tests.helpers import make_available, seed_world
from workers.jobs.reconcile import reconcile


def test_dead_lock_holder_releases_the_lock_and_cleaning_resumes(ctx, jobs):
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        node.reservation = "bms-host-that-died-123"
        node.reserved_at = utcnow() - timedelta(minutes=10)
        lifecycle.fire_node(s, node, "manage")  # available → manageable, a stand-in for work
        lifecycle.fire_node(s, node, "provide")  # manageable → cleaning (transient)
    counts = reconcile()
    assert counts["locks_released"] == 1 and counts["nodes_resumed"] == 1
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert node.reservation is None
        assert node.provision_state == "cleaning"
    jobs()
    with ctx.session() as s:
        assert s.get_one(Node, node_id).provision_state == "available"
    assert w.flavor


def test_build_whose_job_vanished_is_requeued_and_completes(ctx, jobs):
    w = seed_world(ctx)
    make_available(ctx, 1, jobs)
    with ctx.session() as s:
        from tenants.models import User
        from tenants.principal import Principal

        alice = s.query(User).filter_by(name="alice").one()
        who = Principal(alice.id, alice.name, alice.project_id, alice.role)
        inst = instances.create(ctx, s, {"name": "lost", "flavor": w.flavor, "image": w.image}, who)
        inst_id = inst.id
    ctx.queue.empty()  # the job is lost (e.g. Redis flushed)
    with ctx.session() as s:
        inst = s.get_one(Instance, inst_id)
        inst.updated_at = utcnow() - timedelta(minutes=10)
    assert reconcile()["jobs_requeued"] == 1
    jobs()
    with ctx.session() as s:
        assert s.get_one(Instance, inst_id).status == "ACTIVE"
    assert identity.SYSTEM.is_admin
