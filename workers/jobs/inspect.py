"""Inspection: inspecting → manageable with the findings applied, or → inspect failed.

Out-of-band (``driver_info.inspect_mode`` ``bmc``, the default): the driver's inspect
interface asks the BMC, in one job. In-band (``agent``): the ``inspect`` plan netboots the
deploy ramdisk and hands its agent the ``inventory`` command; the node waits in
``inspect wait`` with no job running, the agent's report resumes the plan
(``continue_inspect``), and the end of the plan applies what the agent saw: cpus, RAM, the
root disk, the CPU architecture, the boot mode, every NIC's MAC.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.core import inspection, lifecycle
from portal.core.models import Node
from portal.core.states import INSPECT_WAIT, INSPECTING
from workers.context import current, holder_name
from workers.drivers.agent import inspect_mode, inventory_from_agent
from workers.drivers.base import DriverError, Inventory, StepResult
from workers.drivers.registry import get_driver
from workers.jobs.common import LockHold, fail_node, lock_node_in, node_lock
from workers.runner import node_task, run_plan


def inspect_node(node_id: str) -> str:
    return _inspect(node_id, INSPECTING, resume=False)


def continue_inspect(node_id: str) -> str:
    """Resume an in-band inspection once the agent reported its inventory."""
    return _inspect(node_id, INSPECT_WAIT, resume=True)


def _inspect(node_id: str, expected_state: str, resume: bool) -> str:
    ctx, holder = current(), holder_name()
    with ctx.db.session() as s:
        node = lock_node_in(s, node_id, holder)
        if node is None or node.provision_state != expected_state:
            s.rollback()
            return "skipped"
        if resume:
            lifecycle.fire_node(s, node, "resume", actor=holder)
        task = node_task(ctx, s, node)
    mode = "bmc"  # until inspect_mode() has vetted the node's choice
    with node_lock(ctx, node_id, holder, acquired=True) as hold:
        try:
            mode = inspect_mode(task)
            if mode == "agent":
                return _in_band(node_id, hold)
            driver = get_driver(task.driver)
            driver.inspect.validate(task)
            found = driver.inspect.inspect_hardware(task)
        except Exception as exc:
            # in-band inspection powered the node on: leave it off
            power_off = mode == "agent"
            fail_node(ctx, node_id, f"inspection failed: {exc}", holder, power_off=power_off)
            return "failed"
        with ctx.db.session() as s:
            _apply_and_finish(s, s.get_one(Node, node_id), found, task.driver, hold)
    return "done"


def _in_band(node_id: str, hold: LockHold) -> str:
    def end(s: Session, node: Node, result: StepResult) -> None:
        if result == "wait":
            lifecycle.fire_node(s, node, "wait", actor=hold.holder)
            hold.release_in(s, node)
            return
        results: dict[str, Any] = (node.driver_internal_info or {}).get("agent_results", {})
        if "inventory" not in results:
            raise DriverError("the plan ended without the agent's inventory")
        _apply_and_finish(s, node, inventory_from_agent(results["inventory"]), "agent", hold)

    return run_plan(current(), node_id, "inspect", on_end=end)


def _apply_and_finish(
    s: Session, node: Node, found: Inventory, source: str, hold: LockHold
) -> None:
    inspection.apply(
        s,
        node,
        source=source,
        properties=found.properties,
        capabilities=found.capabilities,
        macs=found.macs,
        raw=found.raw,
        actor=hold.holder,
    )
    lifecycle.fire_node(s, node, "done", actor=hold.holder)
    hold.release_in(s, node)
