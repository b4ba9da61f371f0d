"""The power sync loop: compare every node's recorded power state with its BMC's.

One pass reads all nodes nobody is operating (no lock, past ``enroll``), each BMC in its
own child process with a deadline (``BMS_POWER_SYNC_WORKERS`` at once; a BMC that does not
answer gives its slot back after a moment, see :func:`isolation.run_many`), then writes
the outcome node by node, under the node's row lock and only if no job took the node
meanwhile:

- a mismatch is recorded (event ``node.power_out_of_band``) and, per
  ``BMS_POWER_SYNC_MODE``, accepted as the new truth (default: the operator who pressed the
  button knew why) or corrected by setting the BMC back (only nodes in a stable state and
  not in maintenance: a node waiting for its deploy agent reboots by design);
- ``BMS_POWER_SYNC_MAX_FAILURES`` failed reads in a row put the node in maintenance with
  reason ``power sync failed: <error>`` and ``fault = "power failure"``;
- the first good read afterwards lifts that maintenance. Maintenance an admin set has no
  fault and is never lifted here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.models import Node
from portal.core.states import ENROLL, NODE_STABLE
from workers.context import WorkerContext, current
from workers.drivers import isolation
from workers.drivers.base import DriverError, ErrorKind, NodeTask, preload_libraries
from workers.drivers.bmc import secrets_of
from workers.drivers.registry import get_driver, secret_fields
from workers.runner import record_power

log = logging.getLogger(__name__)
ACTOR = "power-sync"
POWER_FAILURE = "power failure"
MODES = ("accept", "correct")


@dataclass
class PassReport:
    nodes: int = 0
    read_ok: int = 0
    read_failed: int = 0
    mismatches: int = 0
    corrected: int = 0
    faults_set: int = 0
    faults_cleared: int = 0
    skipped_busy: int = 0  # a job took the node while its BMC was being read
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # by error kind

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "errors": dict(self.errors)}


@dataclass(frozen=True)
class _Seen:
    """What the pass read from the database before asking the BMC."""

    power_state: str | None
    task: NodeTask


def read_power(task: NodeTask) -> str:
    """Runs in the child process (top-level so a forked child can run it)."""
    return get_driver(task.driver).power.get_power_state(task)


def set_power(task: NodeTask, state: str) -> None:
    get_driver(task.driver).power.set_power_state(task, state)


def _candidates(
    ctx: WorkerContext, s: Session, timeout: float
) -> tuple[dict[str, _Seen], dict[str, str]]:
    """Nodes to read, and those whose secrets no configured key opens (with why): they are
    not read (no BMC is asked without its credentials) but count as failed reads."""
    nodes = s.scalars(
        select(Node).where(Node.reservation.is_(None), Node.provision_state != ENROLL)
    ).all()
    seen: dict[str, _Seen] = {}
    broken: dict[str, str] = {}
    for n in nodes:
        try:
            info = ctx.cipher.unseal(n.driver_info or {})
        except ValueError as exc:
            info, broken[n.id] = {}, f"driver_info: {exc}"
        seen[n.id] = _Seen(
            n.power_state,
            NodeTask(
                node_id=n.id,
                driver=n.driver,
                driver_info=info,
                capabilities=dict(n.capabilities or {}),
                internal=dict(n.driver_internal_info or {}),
                call_timeout=timeout,
                power_wait=ctx.settings.power_wait,
                secret_keys=secret_fields(),
            ),
        )
    return seen, broken


def _calls(seen: dict[str, _Seen], fn: Any, timeout: float, *extra: Any) -> list[isolation.Call]:
    return [
        isolation.Call(
            fn=fn,
            args=(s.task, *extra),
            timeout=timeout,
            secrets=secrets_of(s.task),
            label=f"power sync of node {node_id}",
        )
        for node_id, s in seen.items()
    ]


def sync_pass(ctx: WorkerContext | None = None) -> PassReport:
    ctx = ctx or current()
    cfg = ctx.settings
    if cfg.power_sync_mode not in MODES:
        raise ValueError(f"BMS_POWER_SYNC_MODE must be one of {MODES}, not {cfg.power_sync_mode!r}")
    preload_libraries()  # once per process: the forked readers inherit them
    started = time.monotonic()
    report = PassReport()
    with ctx.db.session() as s:
        seen, broken = _candidates(ctx, s, cfg.power_sync_timeout)
    report.nodes = len(seen)
    readable = {nid: one for nid, one in seen.items() if nid not in broken}
    # A hung BMC holds a slot for at most 2 s; up to 4 slots' worth may hang at once.
    read = isolation.run_many(
        _calls(readable, read_power, cfg.power_sync_timeout),
        slots=cfg.power_sync_workers,
        slot_time=min(2.0, cfg.power_sync_timeout),
        max_in_flight=4 * cfg.power_sync_workers,
    )
    outcomes = dict(zip(readable, read, strict=True))
    for nid, why in broken.items():
        outcomes[nid] = isolation.Outcome(error=DriverError(why, ErrorKind.INVALID))
    to_correct: dict[str, _Seen] = {}
    for node_id, before in seen.items():
        outcome = outcomes[node_id]
        with ctx.db.session() as s:
            node = s.get(Node, node_id, with_for_update=True)
            if (
                node is None
                or node.reservation is not None
                or node.power_state != before.power_state
            ):
                report.skipped_busy += 1
                continue
            if outcome.error is not None:
                report.read_failed += 1
                kind = outcome.error.kind
                report.errors[kind] = report.errors.get(kind, 0) + 1
                _failed(s, node, str(outcome.error), cfg.power_sync_max_failures, report)
            else:
                report.read_ok += 1
                if _answered(s, node, str(outcome.value), cfg.power_sync_mode, report):
                    to_correct[node_id] = before
    if to_correct:
        _correct(ctx, to_correct, report)
    report.seconds = time.monotonic() - started
    if report.mismatches or report.read_failed or report.faults_cleared:
        log.info("power sync: %s", report.as_dict())
    return report


def _failed(s: Session, node: Node, error: str, max_failures: int, report: PassReport) -> None:
    node.power_sync_failures = (node.power_sync_failures or 0) + 1
    if node.power_sync_failures < max_failures or node.maintenance:
        return
    node.maintenance = True
    node.fault = POWER_FAILURE
    node.maintenance_reason = f"power sync failed: {error}"
    report.faults_set += 1
    _maintenance_event(s, node, node.maintenance_reason, failures=node.power_sync_failures)


def _maintenance_event(s: Session, node: Node, reason: str, **extra: Any) -> None:
    events.record(
        s,
        "node.maintenance",
        "node",
        node.id,
        actor=ACTOR,
        project_id=node.owner,
        maintenance=node.maintenance,
        fault=node.fault,
        reason=reason,
        **extra,
    )


def _answered(s: Session, node: Node, actual: str, mode: str, report: PassReport) -> bool:
    """Record a good read; True if the BMC should be set back to the recorded state."""
    node.power_sync_failures = 0
    if node.fault == POWER_FAILURE and node.maintenance:
        node.maintenance, node.fault, reason = False, None, node.maintenance_reason
        node.maintenance_reason = None
        report.faults_cleared += 1
        _maintenance_event(s, node, f"BMC answers again (was: {reason})")
    recorded = node.power_state
    if recorded == actual:
        return False
    if recorded is None:  # first reading ever: nothing to compare with
        record_power(s, node, actual, ACTOR)
        return False
    report.mismatches += 1
    # Never fight an operation in flight (a node waiting for its agent reboots by design)
    # or an admin's maintenance work: only stable, in-service nodes are set back.
    correct = mode == "correct" and not node.maintenance and node.provision_state in NODE_STABLE
    events.record(
        s,
        "node.power_out_of_band",
        "node",
        node.id,
        actor=ACTOR,
        project_id=node.owner,
        recorded=recorded,
        actual=actual,
        action="correct" if correct else "accept",
    )
    if not correct:
        record_power(s, node, actual, ACTOR)
    return correct


def _correct(ctx: WorkerContext, nodes: dict[str, _Seen], report: PassReport) -> None:
    """Set BMCs back to the recorded state (mode "correct"), then record what happened."""
    cfg = ctx.settings
    targets = {nid: seen.power_state for nid, seen in nodes.items()}
    calls = [
        isolation.Call(
            fn=set_power,
            args=(seen.task, targets[nid]),
            timeout=cfg.power_sync_timeout + cfg.power_wait,
            secrets=secrets_of(seen.task),
            label=f"power correction of node {nid}",
        )
        for nid, seen in nodes.items()
    ]
    outcomes = isolation.run_many(calls, slots=cfg.power_sync_workers)
    for nid, outcome in zip(nodes, outcomes, strict=True):
        with ctx.db.session() as s:
            node = s.get(Node, nid)
            if node is None:
                continue
            if outcome.error is None:
                report.corrected += 1
            events.record(
                s,
                "node.power_corrected",
                "node",
                nid,
                actor=ACTOR,
                project_id=node.owner,
                state=targets[nid],
                error=None if outcome.error is None else str(outcome.error),
            )


def sync_forever(interval: float) -> None:
    """A pass every ``interval`` seconds; one process at a time cluster-wide (Redis lock)."""
    import tenants.models  # noqa: F401  (a fresh process: nodes' foreign keys need its tables)
    from workers.pdeathsig import die_with_parent

    die_with_parent()  # a kill -9'd worker must not leave its power sync running
    ctx = current()
    while True:
        started = time.monotonic()
        lock = ctx.redis.lock(
            f"bms:power-sync:{ctx.settings.queue_name}",
            timeout=max(interval * 3, 60),
            blocking=False,
        )
        if lock.acquire(blocking=False):
            try:
                sync_pass(ctx)
            except Exception:
                log.exception("power sync pass failed")
            finally:
                try:
                    lock.release()
                except Exception:
                    log.debug("power sync lock expired before release")
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
