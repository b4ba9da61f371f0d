"""Plan checkpoints and lock hand-over: what a crash or a failed commit leaves behind.

Instant steps are checkpointed once, slow steps (real hardware) each time; a plan that
fails part-way resumes from its last checkpoint; a lock released inside the transaction
that ends an operation stays held if that transaction does not commit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from portal.core.models import Event, Node
from tests.helpers import make_available
from workers import context as worker_context
from workers.drivers.base import DriverError
from workers.jobs.common import node_lock
from workers.runner import run_plan


def _worker_ctx(monkeypatch: pytest.MonkeyPatch, interval: float) -> Any:
    wctx = worker_context.current()
    settings = dataclasses.replace(wctx.settings, checkpoint_interval=interval)
    monkeypatch.setattr(wctx, "settings", settings)
    return wctx


def _failing_node(ctx: Any, jobs: Any, step: str) -> str:
    (node_id,) = make_available(ctx, 1, jobs)
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        node.driver_info = {**node.driver_info, "fake_fail": step}
        node.power_state = "power off"
    return node_id


def _power_events(ctx: Any, node_id: str) -> int:
    with ctx.session() as s:
        return s.query(Event).filter_by(resource_id=node_id, type="node.power_state").count()


def test_slow_steps_are_checkpointed_one_by_one(ctx, jobs, monkeypatch):
    node_id = _failing_node(ctx, jobs, "wipe_disks")
    before = _power_events(ctx, node_id)
    wctx = _worker_ctx(monkeypatch, 0.0)  # every step counts as slow
    with pytest.raises(DriverError):
        run_plan(wctx, node_id, "clean")
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        # power_off, provisioning_network, set_boot_pxe, prepare_netboot, power_on are
        # recorded; wipe_disks is not
        assert node.driver_internal_info["plan_step"] == 5
        assert node.power_state == "power on"
    assert _power_events(ctx, node_id) == before + 1  # off was already true: only "on"


def test_instant_steps_share_one_checkpoint_and_a_failure_replays_them(ctx, jobs, monkeypatch):
    node_id = _failing_node(ctx, jobs, "wipe_disks")
    before = _power_events(ctx, node_id)
    wctx = _worker_ctx(monkeypatch, 3600.0)
    with pytest.raises(DriverError):
        run_plan(wctx, node_id, "clean")
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert "plan" not in (node.driver_internal_info or {})  # nothing checkpointed yet
        assert node.power_state == "power off"
        node.driver_info = {k: v for k, v in node.driver_info.items() if k != "fake_fail"}
    ends: list[str] = []
    result = run_plan(wctx, node_id, "clean", on_end=lambda s, n, r: ends.append(r))
    assert result == "done" and ends == ["done"]
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert "plan" not in node.driver_internal_info  # finished: position forgotten
        assert node.power_state == "power off"
    # the replayed plan went on, then off: both recorded, in one transaction, in order
    with ctx.session() as s:
        states = [
            e.payload["state"]
            for e in s.query(Event)
            .filter_by(resource_id=node_id, type="node.power_state")
            .order_by(Event.id)
            .all()
        ][before:]
    assert states == ["power on", "power off"]


def test_resume_after_a_checkpoint_repeats_no_finished_step(ctx, jobs, monkeypatch):
    node_id = _failing_node(ctx, jobs, "wipe_disks")
    wctx = _worker_ctx(monkeypatch, 0.0)
    with pytest.raises(DriverError):
        run_plan(wctx, node_id, "clean")
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        node.driver_info = {**node.driver_info, "fake_fail": "power"}  # power steps would fail
    # Resuming at wipe_disks must not run power_off/power_on again; the last step,
    # power_off_after_wipe, does fail.
    with pytest.raises(DriverError, match="power"):
        run_plan(wctx, node_id, "clean")
    with ctx.session() as s:
        assert s.get_one(Node, node_id).driver_internal_info["plan_step"] == 6  # wipe done


def test_lock_released_in_a_rolled_back_transaction_is_released_after_all(ctx, jobs):
    (node_id,) = make_available(ctx, 1, jobs)
    wctx = worker_context.current()
    with node_lock(wctx, node_id, "holder-a") as hold:
        with ctx.session() as s:
            assert s.get_one(Node, node_id).reservation == "holder-a"
        with pytest.raises(RuntimeError), wctx.db.session() as s:
            hold.release_in(s)
            raise RuntimeError("the commit never happens")
        assert not hold.released
        with ctx.session() as s:
            assert s.get_one(Node, node_id).reservation == "holder-a"
    with ctx.session() as s:
        assert s.get_one(Node, node_id).reservation is None


def test_lock_released_in_a_committed_transaction_counts_as_released(ctx, jobs):
    (node_id,) = make_available(ctx, 1, jobs)
    wctx = worker_context.current()
    with node_lock(wctx, node_id, "holder-a") as hold:
        with wctx.db.session() as s:
            hold.release_in(s)
        assert hold.released
        with ctx.session() as s:
            assert s.get_one(Node, node_id).reservation is None
