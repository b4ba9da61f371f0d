"""Out-of-band inspection: inspecting → manageable with the findings applied,
or → inspect failed with the BMC's error."""

from __future__ import annotations

from portal.core import inspection, lifecycle
from portal.core.models import Node
from portal.core.states import INSPECTING
from workers.context import current, holder_name
from workers.drivers.base import get_driver
from workers.jobs.common import fail_node, lock_node_in, node_lock
from workers.runner import node_task


def inspect_node(node_id: str) -> str:
    ctx, holder = current(), holder_name()
    with ctx.db.session() as s:
        node = lock_node_in(s, node_id, holder)
        if node is None or node.provision_state != INSPECTING:
            s.rollback()
            return "skipped"
        task = node_task(ctx, s, node)
    with node_lock(ctx, node_id, holder, acquired=True) as hold:
        try:
            driver = get_driver(task.driver)
            driver.inspect.validate(task)
            found = driver.inspect.inspect_hardware(task)
        except Exception as exc:
            fail_node(ctx, node_id, f"inspection failed: {exc}", holder, power_off=False)
            return "failed"
        with ctx.db.session() as s:
            node = s.get_one(Node, node_id)
            inspection.apply(
                s,
                node,
                source=task.driver,
                properties=found.properties,
                capabilities=found.capabilities,
                macs=found.macs,
                raw=found.raw,
                actor=holder,
            )
            lifecycle.fire_node(s, node, "done", actor=holder)
            hold.release_in(s, node)
    return "done"
