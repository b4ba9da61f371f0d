"""The power sync loop on fake BMCs: mismatches, fault-maintenance set and lifted, admin
maintenance left alone, busy nodes skipped. The real-BMC version is tests/hardware."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from portal.core.models import Event, Node
from portal.core.states import POWER_OFF, POWER_ON
from portal.services import identity, nodes
from tests.helpers import make_available
from workers import power_sync
from workers.context import WorkerContext


def wctx(ctx, **over) -> WorkerContext:
    over = {"power_sync_max_failures": 2, "power_sync_timeout": 5.0, **over}
    settings = dataclasses.replace(ctx.settings, **over)
    return WorkerContext.build(settings, db=ctx.db)


def _set_bmc(ctx, node_id: str, **changes) -> None:
    """Change what the fake BMC reports: its power (internal state) or its failure mode."""
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        if "power" in changes:
            node.driver_internal_info = {
                **node.driver_internal_info,
                "fake_power": changes["power"],
            }
        if "fail" in changes:
            info = ctx.cipher.unseal(node.driver_info)
            info["fake_fail"] = changes["fail"]
            node.driver_info = ctx.cipher.seal(info)


def _events(ctx, node_id: str, type_: str) -> list[dict]:
    with ctx.session() as s:
        rows = s.scalars(
            select(Event)
            .where(Event.resource_id == node_id, Event.type == type_)
            .order_by(Event.id)
        ).all()
        return [e.payload for e in rows]


def test_out_of_band_change_is_accepted_as_the_truth_by_default(ctx, jobs) -> None:
    a, b = make_available(ctx, 2, jobs)
    with ctx.session() as s:
        assert s.get_one(Node, a).power_state == POWER_OFF
    _set_bmc(ctx, a, power=POWER_ON)  # someone pressed the button
    report = power_sync.sync_pass(wctx(ctx))
    assert (report.nodes, report.read_ok, report.mismatches) == (2, 2, 1)
    with ctx.session() as s:
        assert s.get_one(Node, a).power_state == POWER_ON
        assert s.get_one(Node, b).power_state == POWER_OFF
    (ev,) = _events(ctx, a, "node.power_out_of_band")
    assert ev == {"recorded": POWER_OFF, "actual": POWER_ON, "action": "accept"}
    # the next pass finds nothing to do and writes nothing
    before = len(_events(ctx, a, "node.power_state"))
    assert power_sync.sync_pass(wctx(ctx)).mismatches == 0
    assert len(_events(ctx, a, "node.power_state")) == before


def test_correct_mode_sets_the_bmc_back(ctx, jobs) -> None:
    (a,) = make_available(ctx, 1, jobs)
    _set_bmc(ctx, a, power=POWER_ON)
    report = power_sync.sync_pass(wctx(ctx, power_sync_mode="correct"))
    assert (report.mismatches, report.corrected) == (1, 1)
    with ctx.session() as s:
        assert s.get_one(Node, a).power_state == POWER_OFF
    (ev,) = _events(ctx, a, "node.power_out_of_band")
    assert ev["action"] == "correct"
    assert _events(ctx, a, "node.power_corrected") == [{"state": POWER_OFF, "error": None}]


def test_correct_mode_leaves_nodes_waiting_for_their_agent_alone(ctx, jobs) -> None:
    (a,) = make_available(ctx, 1, jobs)
    with ctx.session() as s:
        s.get_one(Node, a).provision_state = "wait call-back"  # the agent rebooted it
    _set_bmc(ctx, a, power=POWER_ON)
    report = power_sync.sync_pass(wctx(ctx, power_sync_mode="correct"))
    assert (report.mismatches, report.corrected) == (1, 0)
    (ev,) = _events(ctx, a, "node.power_out_of_band")
    assert ev["action"] == "accept"


def test_failed_reads_put_the_node_in_fault_maintenance_and_a_good_read_lifts_it(ctx, jobs):
    (a,) = make_available(ctx, 1, jobs)
    _set_bmc(ctx, a, fail="power")
    first = power_sync.sync_pass(wctx(ctx))
    assert (first.read_failed, first.faults_set) == (1, 0)
    second = power_sync.sync_pass(wctx(ctx))
    assert second.faults_set == 1
    with ctx.session() as s:
        node = s.get_one(Node, a)
        assert node.maintenance and node.fault == "power failure"
        assert node.maintenance_reason.startswith("power sync failed: ")
        assert "fake failure injected" in node.maintenance_reason
        assert node.power_sync_failures == 2
    # still in maintenance, the loop keeps reading it; the BMC comes back
    _set_bmc(ctx, a, fail="")
    third = power_sync.sync_pass(wctx(ctx))
    assert third.faults_cleared == 1
    with ctx.session() as s:
        node = s.get_one(Node, a)
        assert not node.maintenance and node.fault is None and node.maintenance_reason is None
        assert node.power_sync_failures == 0
    set_, cleared = _events(ctx, a, "node.maintenance")
    assert set_["maintenance"] is True and set_["fault"] == "power failure"
    assert cleared["maintenance"] is False and "BMC answers again" in cleared["reason"]


def test_admin_maintenance_is_never_lifted_by_the_loop(ctx, jobs) -> None:
    (a,) = make_available(ctx, 1, jobs)
    _set_bmc(ctx, a, fail="power")
    for _ in range(2):
        power_sync.sync_pass(wctx(ctx))
    with ctx.session() as s:  # the admin takes over the fault-maintenance
        nodes.set_maintenance(s, s.get_one(Node, a), True, "RMA ticket 42", identity.SYSTEM)
    _set_bmc(ctx, a, fail="")
    assert power_sync.sync_pass(wctx(ctx)).faults_cleared == 0
    with ctx.session() as s:
        node = s.get_one(Node, a)
        assert node.maintenance and node.maintenance_reason == "RMA ticket 42"
        assert node.fault is None


def test_locked_and_enrolled_nodes_are_left_alone(ctx, jobs) -> None:
    a, b = make_available(ctx, 2, jobs)
    with ctx.session() as s:
        s.get_one(Node, a).reservation = "someone-deploying"
    _set_bmc(ctx, a, power=POWER_ON)
    report = power_sync.sync_pass(wctx(ctx))
    assert report.nodes == 1  # only b
    with ctx.session() as s:
        assert s.get_one(Node, a).power_state == POWER_OFF
    assert _events(ctx, a, "node.power_out_of_band") == []
    assert b


def test_a_hung_bmc_costs_its_timeout_and_is_counted_unreachable(ctx, jobs) -> None:
    a, b = make_available(ctx, 2, jobs)
    with ctx.session() as s:
        node = s.get_one(Node, a)
        info = ctx.cipher.unseal(node.driver_info)
        node.driver_info = ctx.cipher.seal({**info, "fake_delay": 30})
    report = power_sync.sync_pass(wctx(ctx, power_sync_timeout=1.0))
    assert (report.read_ok, report.read_failed) == (1, 1)
    assert report.errors == {"unreachable": 1}
    assert report.seconds < 4
    assert b


def test_a_node_whose_secret_no_key_opens_fails_its_read_not_the_whole_pass(ctx, jobs) -> None:
    """Before: one undecryptable secret (a key dropped too early, or a pre-fix ``fernet:``
    password stored in clear) raised out of the pass, so no node was synced."""
    from cryptography.fernet import Fernet

    from portal.core.secrets import Cipher

    a, b = make_available(ctx, 2, jobs)
    stranger = Cipher((Fernet.generate_key().decode(),)).encrypt("pw")
    with ctx.session() as s:
        s.get_one(Node, a).driver_info = {"bmc_password": stranger}
    _set_bmc(ctx, b, power=POWER_ON)
    report = power_sync.sync_pass(wctx(ctx))
    assert (report.nodes, report.read_ok, report.read_failed, report.mismatches) == (2, 1, 1, 1)
    assert report.errors == {"invalid": 1}
    with ctx.session() as s:
        assert s.get_one(Node, b).power_state == POWER_ON
        assert s.get_one(Node, a).power_sync_failures == 1
    power_sync.sync_pass(wctx(ctx))
    with ctx.session() as s:
        node = s.get_one(Node, a)
        assert node.maintenance and "cannot be decrypted" in node.maintenance_reason
