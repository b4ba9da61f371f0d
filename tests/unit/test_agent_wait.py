"""Deploy and clean plans can hand over to an agent: the job ends in a wait state, holds
no worker and no lock, and the callback's job resumes the plan at the next step."""

from __future__ import annotations

from datetime import timedelta

from portal.core.db import utcnow
from portal.core.models import Instance, Node
from portal.services import identity, instances, nodes
from tenants.models import User
from tenants.principal import Principal
from tests.helpers import make_available, seed_world
from workers import queue as jobqueue
from workers.jobs.reconcile import reconcile
from workers.steps import DEPLOY


def _alice(s) -> Principal:
    u = s.query(User).filter_by(name="alice").one()
    return Principal(u.id, u.name, u.project_id, u.role)


def _deploy_waiting_for_agent(ctx, jobs) -> tuple[str, str]:
    """An instance built on an agent-style node: the deploy waits for the agent."""
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        node.driver_info = {**node.driver_info, "fake_async": True}
        inst_id = instances.create(
            ctx, s, {"name": "a", "flavor": w.flavor, "image": w.image}, _alice(s)
        ).id
    jobs()
    return node_id, inst_id


def test_deploy_waits_for_callback_then_resumes(ctx, jobs):
    node_id, inst_id = _deploy_waiting_for_agent(ctx, jobs)
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert node.provision_state == "wait call-back" and node.target_provision_state == "active"
        assert node.reservation is None  # nobody is held while the agent works
        after_write = [step.name for step in DEPLOY].index("write_image") + 1
        assert node.driver_internal_info["plan_step"] == after_write
        assert s.get_one(Instance, inst_id).status == "BUILD"
    jobqueue.enqueue(ctx.queue, "continue_deploy", node_id)  # what the agent's callback does
    jobs()
    with ctx.session() as s:
        assert s.get_one(Node, node_id).provision_state == "active"
        assert s.get_one(Instance, inst_id).status == "ACTIVE"


def test_a_deploy_with_no_agent_times_out_and_the_node_is_given_back(ctx, jobs):
    node_id, inst_id = _deploy_waiting_for_agent(ctx, jobs)
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert node.provision_state == "wait call-back"
        node.provision_updated_at = utcnow() - timedelta(hours=1)
    assert reconcile()["nodes_failed"] == 1
    with ctx.session() as s:
        assert s.get_one(Node, node_id).provision_state == "deploy failed"
        assert s.get_one(Instance, inst_id).status == "ERROR"
    jobs()  # release_failed_deploy: tear-down (power off), then cleaning through the agent
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert node.provision_state == "clean wait" and node.instance_id is None
        assert "no sign of the deploy agent" in (node.last_error or "")
        assert s.get_one(Instance, inst_id).node_id is None


def _node_in_clean_wait(ctx, jobs) -> str:
    """An available node switched to an agent-style driver, then sent through cleaning."""
    (node_id,) = make_available(ctx, 1, jobs)
    for action in ("manage", "provide"):
        with ctx.session() as s:
            node = s.get_one(Node, node_id)
            node.driver_info = {**node.driver_info, "fake_async": True}
            nodes.provision(ctx, s, node, action, identity.SYSTEM)
        jobs()
    with ctx.session() as s:
        assert s.get_one(Node, node_id).provision_state == "clean wait"
    return node_id


def test_clean_waits_for_callback_and_times_out_cleanly(ctx, jobs):
    node_id = _node_in_clean_wait(ctx, jobs)
    with ctx.session() as s:
        s.get_one(Node, node_id).provision_updated_at = utcnow() - timedelta(hours=1)
    assert reconcile()["nodes_failed"] == 1  # no sign of the agent within BMS_CALLBACK_TIMEOUT
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert node.provision_state == "clean failed"
        assert "no sign of the deploy agent" in node.last_error
    jobs()  # the reconciler also powered it off
    with ctx.session() as s:
        assert s.get_one(Node, node_id).power_state == "power off"


def test_clean_resumes_on_callback(ctx, jobs):
    node_id = _node_in_clean_wait(ctx, jobs)
    jobqueue.enqueue(ctx.queue, "continue_clean", node_id)
    jobs()
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert node.provision_state == "available" and node.power_state == "power off"
