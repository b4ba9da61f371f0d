"""Running a plan of steps on a node, one step at a time, resumable after a wait or a crash.

The position in the plan is stored in ``driver_internal_info`` (see ``run_plan`` for
when), so a job that is retried (or resumed by an agent's callback) continues where it
stopped.
Hardware calls run outside database transactions: a slow BMC never holds a row lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from portal.core import agent_sessions, events
from portal.core.models import Image, Instance, Node
from workers.context import WorkerContext, holder_name
from workers.drivers.base import DriverError, ErrorKind, NodeTask, StepResult
from workers.drivers.registry import get_driver, secret_fields
from workers.networking.flipper import SwitchPortFlipper
from workers.steps import PLANS, Step, StepEnv

OnStep = Callable[[Session, Node, str, int, int], None]
OnEnd = Callable[[Session, Node, StepResult], None]


class LockLost(DriverError):
    """The node's lock was taken from this job (its worker was thought dead): stop."""


def check_still_held(node: Node) -> None:
    """Raise :class:`LockLost` unless this job (still) holds the node's lock."""
    holder = holder_name()
    if node.reservation == holder or (node.reservation is None and holder.startswith("local:")):
        return
    raise LockLost(f"lock on node {node.id} lost to {node.reservation or 'nobody'}: stopping")


def node_task(ctx: WorkerContext, session: Session, node: Node) -> NodeTask:
    task = NodeTask(
        node_id=node.id,
        driver=node.driver,
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
        call_timeout=ctx.settings.bmc_timeout,
        power_wait=ctx.settings.power_wait,
        secret_keys=secret_fields(),
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
        "image_size": image.size if image else None,
        # What the deploy agent fetches, with its agent token (it has no tenant token).
        "agent_image_url": f"{ctx.settings.public_url}/v1/agent/image",
        "agent_configdrive_url": f"{ctx.settings.public_url}/v1/agent/configdrive",
        "ssh_keys": [k["public_key"] for k in inst.ssh_keys or []],
        "user_data": inst.user_data,
        "addresses": [{"network_id": a.network_id, "address": a.address} for a in inst.addresses],
    }


def take_agent_result(session: Session, node_id: str, task: NodeTask) -> None:
    """The plan resumes after a step handed a command to the agent: go on only if the agent
    reported that command done. Its result is kept in ``task.internal["agent_results"]``."""
    cmd = task.internal["agent_command"]
    found = agent_sessions.result_of(session, node_id, cmd["id"])
    if found is None:
        raise DriverError(f"the agent has not reported '{cmd['name']}' yet", ErrorKind.ERROR)
    task.internal.pop("agent_command")
    if not found["ok"]:
        raise DriverError(
            f"the agent's {cmd['name']} failed: {found['error'] or 'no reason given'}"
        )
    task.internal["agent_results"] = {
        **task.internal.get("agent_results", {}),
        cmd["name"]: found["result"],
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


def forget_plan_in(info: dict[str, Any]) -> None:
    info.pop("plan", None)
    info.pop("plan_step", None)
    info.pop("plan_last", None)


def forget_plan(node: Node) -> None:
    """Drop the stored plan position: the next plan starts from its first step."""
    info = dict(node.driver_internal_info or {})
    forget_plan_in(info)
    node.driver_internal_info = info


def resume_position(internal: dict[str, Any], plan: str, steps: tuple[Step, ...]) -> int:
    """Where a stored plan goes on: after the step named ``plan_last``, so a node that
    waits through an upgrade which added or moved steps resumes at the right one; the
    index ``plan_step`` only for positions stored before names were."""
    if internal.get("plan") != plan:
        return 0
    names = [step.name for step in steps]
    last = internal.get("plan_last")
    if last in names:
        return names.index(last) + 1
    return int(internal.get("plan_step", 0))


def run_plan(
    ctx: WorkerContext,
    node_id: str,
    plan: str,
    on_step: OnStep | None = None,
    on_end: OnEnd | None = None,
    task: NodeTask | None = None,
) -> StepResult:
    """Run ``plan`` from the stored position; "wait" if a step handed over to an agent.

    The position (and progress, through ``on_step``) is checkpointed in the database when
    a step hands over, when the plan ends, and otherwise at most every
    ``checkpoint_interval`` seconds. Real hardware steps take seconds, so each of them is
    recorded; a run of instant steps (the fake driver) costs one transaction instead of
    one per step. Steps are idempotent: after a crash the plan resumes from the last
    checkpoint and repeats at most the steps since then.

    ``on_end`` runs in the transaction of the last checkpoint, so the plan's outcome (the
    node's next state, its event, the lock's release) commits together with it. ``task``
    saves the read of the node when the caller has just built it.
    """
    steps = PLANS[plan]
    if task is None:
        with ctx.db.session() as s:
            task = node_task(ctx, s, s.get_one(Node, node_id))
    driver = get_driver(task.driver)
    position = resume_position(task.internal, plan, steps)
    if position > 0 and "agent_command" in task.internal:
        with ctx.db.session() as s:
            take_agent_result(s, node_id, task)
    env = StepEnv(
        driver=driver,
        networks=SwitchPortFlipper(ctx),
        netboot_root=ctx.netboot_root,
        public_url=ctx.settings.public_url,
        images=ctx.image_store,
        convert_timeout=ctx.settings.job_timeout,
    )
    interval = ctx.settings.checkpoint_interval
    last_checkpoint = time.monotonic()
    power: list[str] = []  # power states reached since the last checkpoint, in order
    result: StepResult = "done"
    for index in range(position, len(steps)):
        step = steps[index]
        result = step.run(task, env) or "done"
        task.internal.update(plan=plan, plan_step=index + 1, plan_last=step.name)
        if step.power_after:
            power.append(step.power_after)
        end = result == "wait" or index + 1 == len(steps)
        if end or time.monotonic() - last_checkpoint >= interval:
            # No autoflush: the callbacks' reads (the instance) would otherwise flush the
            # node and the events so far, and the rest would follow at commit (two UPDATEs
            # of the node, two INSERTs of events). Everything goes out once, at commit.
            with ctx.db.session() as s, s.no_autoflush:
                node = s.get_one(Node, node_id)
                check_still_held(node)
                if end and result != "wait":
                    forget_plan_in(task.internal)
                    agent_sessions.end(s, node_id)  # the operation is over
                node.driver_internal_info = dict(task.internal)
                for state in power:
                    if node.power_state != state:
                        record_power(s, node, state)
                if on_step is not None:
                    on_step(s, node, step.name, index + 1, len(steps))
                if end and on_end is not None:
                    on_end(s, node, result)
            power.clear()
            last_checkpoint = time.monotonic()
        if result == "wait":
            return "wait"
    if position >= len(steps):  # resumed after the last step: nothing ran
        with ctx.db.session() as s:
            node = s.get_one(Node, node_id)
            forget_plan(node)
            if on_end is not None:
                on_end(s, node, "done")
    return "done"
