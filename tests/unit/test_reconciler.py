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


def test_an_upload_whose_api_process_died_goes_back_to_queued(ctx):
    """An image left in 'saving' (its uploading API process was killed) is put back to
    'queued' once it shows no progress for BMS_UPLOAD_STALE_AFTER, its partial file
    removed; a live upload (recent progress) is left alone."""
    from sqlalchemy import select

    from portal.core.models import Event, Image

    with ctx.session() as s:
        dead = Image(name="dead-upload", status="saving")
        live = Image(name="live-upload", status="saving")
        s.add_all([dead, live])
        s.flush()
        dead.updated_at = utcnow() - timedelta(seconds=ctx.settings.upload_stale_after + 60)
        live.updated_at = utcnow()
        dead_id, live_id = dead.id, live.id
    root = ctx.settings.image_dir
    root.mkdir(parents=True, exist_ok=True)
    dead_part = root / f".{dead_id}.x1y2.part"
    live_part = root / f".{live_id}.x3y4.part"
    dead_part.write_bytes(b"half an image")
    live_part.write_bytes(b"still arriving")

    assert reconcile()["uploads_requeued"] == 1
    with ctx.session() as s:
        assert s.get_one(Image, dead_id).status == "queued"
        assert s.get_one(Image, live_id).status == "saving"
        failed = s.scalars(
            select(Event).where(Event.resource_id == dead_id, Event.type == "image.upload_failed")
        ).all()
        assert len(failed) == 1 and "no upload progress" in failed[0].payload["error"]
    assert not dead_part.exists() and live_part.exists()
    assert reconcile()["uploads_requeued"] == 0  # once
