"""Running a plan of steps on a node, one step at a time, resumable after a wait or a crash.

The position in the plan is stored in ``driver_internal_info`` after every step, so a
job that is retried (or resumed by an agent's callback) continues where it stopped.
Hardware calls run outside database transactions: a slow BMC never holds a row lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, lazyload

from portal.core import events
from portal.core.models import Image, Instance, Node
from workers.context import WorkerContext
from workers.drivers.base import NodeTask, StepResult, get_driver
from workers.steps import PLANS, StepEnv

OnStep = Callable[[Session, Node, str, int, int], None]
# Per-step bookkeeping never reads the ports: skip the eager (selectin) query for them.
NO_PORTS = (lazyload(Node.ports),)


def node_task(ctx: WorkerContext, session: Session, node: Node) -> NodeTask:
    task = NodeTask(
        node_id=node.id,
        driver_info=ctx.cipher.unseal(node.driver_info or {}),
        properties=dict(node.properties or {}),
        capabilities=dict(node.capabilities or {}),
        internal=dict(node.driver_internal_info or {}),
        ports=[
            {
                "address": p.address,
                "physical_network": p.physical_network,
                "pxe_enabled": p.pxe_enabled,
            }
            for p in node.ports
        ],
    )
    if node.instance_id:
        inst = session.get(Instance, node.instance_id)
        if inst is not None:
            image = session.get(Image, inst.image_id)
            task.instance = _instance_info(ctx, inst, image)
    return task


def _instance_info(ctx: WorkerContext, inst: Instance, image: Image | None) -> dict[str, Any]:
    return {
        "instance_id": inst.id,
        "hostname": inst.name,
        "image_id": inst.image_id,
        "image_url": f"{ctx.settings.public_url}/v1/images/{inst.image_id}/file",
        "image_sha256": image.checksum_sha256 if image else None,
        "image_disk_format": image.disk_format if image else None,
        "ssh_keys": [k["public_key"] for k in inst.ssh_keys or []],
        "user_data": inst.user_data,
        "addresses": [{"network_id": a.network_id, "address": a.address} for a in inst.addresses],
    }


def record_power(session: Session, node: Node, state: str, actor: str = events.SYSTEM) -> None:
    previous, node.power_state = node.power_state, state
    events.record(
        session,
        "node.power_state",
        "node",
        node.id,
        actor=actor,
        project_id=node.owner,
        previous=previous,
        state=state,
    )


def forget_plan(node: Node) -> None:
    """Drop the stored plan position: the next plan starts from its first step."""
    info = dict(node.driver_internal_info or {})
    info.pop("plan", None)
    info.pop("plan_step", None)
    node.driver_internal_info = info


def run_plan(
    ctx: WorkerContext, node_id: str, plan: str, on_step: OnStep | None = None
) -> StepResult:
    """Run ``plan`` from the stored position; "wait" if a step handed over to an agent."""
    steps = PLANS[plan]
    with ctx.db.session() as s:
        node = s.get_one(Node, node_id)
        task = node_task(ctx, s, node)
        driver = get_driver(node.driver)
    position = task.internal.get("plan_step", 0) if task.internal.get("plan") == plan else 0
    env = StepEnv(driver=driver, netboot_root=ctx.netboot_root, public_url=ctx.settings.public_url)
    for index in range(position, len(steps)):
        step = steps[index]
        result = step.run(task, env) or "done"
        task.internal.update(plan=plan, plan_step=index + 1)
        with ctx.db.session() as s:
            node = s.get_one(Node, node_id, options=NO_PORTS)
            node.driver_internal_info = dict(task.internal)
            if step.power_after and node.power_state != step.power_after:
                record_power(s, node, step.power_after)
            if on_step is not None:
                on_step(s, node, step.name, index + 1, len(steps))
        if result == "wait":
            return "wait"
    with ctx.db.session() as s:
        forget_plan(s.get_one(Node, node_id, options=NO_PORTS))
    return "done"
