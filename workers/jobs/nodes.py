"""Node operations: verify (manage), clean (provide), power, sensors."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.core import events, lifecycle
from portal.core.db import utcnow
from portal.core.models import Node
from portal.core.states import CLEAN_WAIT, CLEANING, POWER_OFF, POWER_ON, REBOOT, VERIFYING
from workers.context import current, holder_name
from workers.drivers.base import DriverError, NodeTask, StepResult
from workers.drivers.registry import get_driver
from workers.jobs.common import LockHold, fail_node, lock_node_in, node_lock
from workers.runner import node_task, record_power, run_plan


def verify_node(node_id: str) -> str:
    """verifying → manageable if the BMC answers with the given credentials, else → enroll."""
    ctx, holder = current(), holder_name()
    with node_lock(ctx, node_id, holder) as hold:
        with ctx.db.session() as s:
            node = s.get(Node, node_id)
            if node is None or node.provision_state != VERIFYING:
                return "skipped"
            task = node_task(ctx, s, node)
        try:
            # Like Ironic's manage: the BMC interfaces must be configured and the BMC must
            # answer with these credentials. Deploy fields are checked when deploying.
            driver = get_driver(node.driver)
            driver.power.validate(task)
            driver.management.validate(task)
            power = driver.power.get_power_state(task)
        except Exception as exc:
            fail_node(ctx, node_id, f"verification failed: {exc}", holder, power_off=False)
            return "failed"
        with ctx.db.session() as s:
            node = s.get_one(Node, node_id)
            node.driver_internal_info = dict(task.internal)
            if node.power_state != power:
                record_power(s, node, power, holder)
            lifecycle.fire_node(s, node, "done", actor=holder)
            # unlocked in the transaction that makes it manageable: an admin who sees
            # "manageable" can act on it at once
            hold.release_in(s, node)
    return "done"


def clean_node(node_id: str) -> str:
    """cleaning → available after wiping the disks; → clean failed on error."""
    return _clean(node_id, CLEANING, resume=False)


def continue_clean(node_id: str) -> str:
    """Resume a cleaning that waited for an agent callback (clean wait → cleaning)."""
    return _clean(node_id, CLEAN_WAIT, resume=True)


def _clean(node_id: str, expected_state: str, resume: bool) -> str:
    ctx, holder = current(), holder_name()
    with ctx.db.session() as s:
        node = lock_node_in(s, node_id, holder)
        if node is None or node.provision_state != expected_state:
            s.rollback()
            return "skipped"
        if resume:
            lifecycle.fire_node(s, node, "resume", actor=holder)
    with node_lock(ctx, node_id, holder, acquired=True) as hold:
        return clean_locked(node_id, hold)


def clean_locked(node_id: str, hold: LockHold, task: NodeTask | None = None) -> str:
    """Run the clean plan on a node in ``cleaning`` whose lock the caller holds.

    ``task``: the node as the caller last read it, if it has (saves reading it again).
    """
    ctx, holder = current(), hold.holder

    def end(s: Session, node: Node, result: StepResult) -> None:
        # "available" is written in the same transaction that ends the cleaning: the node
        # is schedulable the moment this commits, with no periodic sync in between.
        lifecycle.fire_node(s, node, "wait" if result == "wait" else "done", actor=holder)
        if result != "wait" and "clean_resumes" in (node.driver_internal_info or {}):
            info = dict(node.driver_internal_info or {})
            info.pop("clean_resumes")  # cleaned: a later crash starts counting again
            node.driver_internal_info = info
        hold.release_in(s, node)

    try:
        return run_plan(ctx, node_id, "clean", on_end=end, task=task)
    except Exception as exc:
        fail_node(ctx, node_id, f"cleaning failed: {exc}", holder, power_off=True)
        return "failed"


def read_sensors(node_id: str) -> dict[str, Any]:
    """The BMC's sensor readings. Takes no lock: reading never changes the node, and a
    long deploy must not make the health view wait."""
    ctx = current()
    with ctx.db.session() as s:
        node = s.get(Node, node_id)
        if node is None:
            return {"error": "no such node", "kind": "error"}
        task = node_task(ctx, s, node)
    try:
        readings = get_driver(task.driver).management.get_sensors(task)
    except DriverError as exc:
        return {"error": str(exc), "kind": exc.kind}
    return {"sensors": readings, "read_at": utcnow().isoformat()}


def set_power(node_id: str, target: str, actor: str = events.SYSTEM) -> str:
    ctx, holder = current(), holder_name()
    with node_lock(ctx, node_id, holder):
        with ctx.db.session() as s:
            node = s.get(Node, node_id)
            if node is None:
                return "skipped"
            task = node_task(ctx, s, node)
            driver = get_driver(node.driver)
        try:
            if target == REBOOT:
                driver.power.reboot(task)
                state = POWER_ON
            else:
                driver.power.set_power_state(task, target)
                state = target if target in (POWER_ON, POWER_OFF) else POWER_OFF
        except DriverError as exc:
            with ctx.db.session() as s:
                node = s.get_one(Node, node_id)
                node.last_error = f"power {target} failed: {exc}"
                events.record(
                    s,
                    "node.power_failed",
                    "node",
                    node_id,
                    actor=actor,
                    project_id=node.owner,
                    target=target,
                    error=str(exc),
                )
            return "failed"
        with ctx.db.session() as s:
            node = s.get_one(Node, node_id)
            node.driver_internal_info = dict(task.internal)
            record_power(s, node, state, actor)
    return "done"
