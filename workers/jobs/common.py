"""Helpers shared by jobs: locking a node for the length of an operation, failing cleanly."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.orm import Session

from netboot import artefacts
from portal.core import agent_sessions, lifecycle, locks
from portal.core.models import Node
from portal.core.states import NODE_FSM, POWER_OFF
from workers.context import WorkerContext
from workers.drivers.registry import get_driver
from workers.runner import forget_plan, node_task, record_power
from workers.steps import forget_netboot

log = logging.getLogger(__name__)


@dataclass
class LockHold:
    """A held node lock; ``release_in`` gives it up inside a caller's transaction."""

    node_id: str
    holder: str
    released: bool = False

    def release_in(self, session: Session, node: Node | None = None) -> None:
        """Release in ``session``'s transaction, through ``node`` if the caller loaded it."""
        if node is not None:
            locks.release_loaded(node, self.holder)
        else:
            locks.release(session, self.node_id, self.holder)
        # Released only once that transaction commits; until then node_lock still owns it.
        event.listen(session, "after_commit", self._committed, once=True)

    def _committed(self, session: Session) -> None:
        self.released = True


@contextmanager
def node_lock(
    ctx: WorkerContext, node_id: str, holder: str, acquired: bool = False
) -> Iterator[LockHold]:
    """Hold the node's lock while the block runs; raise :class:`NodeLocked` if it is taken.

    ``acquired``: the caller took the lock in its own transaction. The block may release
    the lock in the transaction that ends the operation (``LockHold.release_in``);
    otherwise, or if that transaction did not commit, it is released here.
    RQ retries a job that raised NodeLocked (see ``workers.queue.LOCK_RETRY``).
    """
    if not acquired:
        with ctx.db.session() as s:
            if not locks.acquire(s, node_id, holder):
                raise locks.NodeLocked(node_id)
    hold = LockHold(node_id, holder)
    try:
        yield hold
    finally:
        if not hold.released:
            with ctx.db.session() as s:
                locks.release(s, node_id, holder)


def lock_node_in(session: Session, node_id: str, holder: str) -> Node | None:
    """Take the node's lock and read the node, in the caller's transaction.

    The lock is taken first, so the node read afterwards cannot change under us. None
    if there is no such node; raises :class:`NodeLocked` if someone else holds it. A
    caller that decides not to go on rolls back, which gives the lock back.
    """
    node = locks.acquire_and_read(session, node_id, holder)
    if node is None:
        if session.get(Node, node_id) is None:
            return None
        raise locks.NodeLocked(node_id)
    return node


def _still_ours(node: Node, holder: str, error: str) -> bool:
    """False if the node moved on without us (the reconciler or an admin took over after
    this worker was thought dead): it is not ours to fail any more."""
    allowed = NODE_FSM.allowed(node.provision_state, include_internal=True)
    if node.reservation in (None, holder) and "fail" in allowed:
        return True
    log.warning(
        "node %s not failed (%s, locked by %s): %s",
        node.id,
        node.provision_state,
        node.reservation,
        error,
    )
    return False


def fail_node(ctx: WorkerContext, node_id: str, error: str, actor: str, power_off: bool) -> None:
    """Move a node to its failure state with ``last_error``, powering it off if asked.

    Never raises: a failure while handling a failure must not leave the node in limbo.
    """
    with ctx.db.session() as s:
        if not _still_ours(s.get_one(Node, node_id), actor, error):
            return
    if power_off:
        try:
            with ctx.db.session() as s:
                node = s.get_one(Node, node_id)
                task = node_task(ctx, s, node)
                driver = get_driver(node.driver)
            driver.power.set_power_state(task, POWER_OFF)
            with ctx.db.session() as s:
                node = s.get_one(Node, node_id)
                node.driver_internal_info = dict(task.internal)
                record_power(s, node, POWER_OFF, actor)
        except Exception as exc:  # the node is failing anyway; record why power-off failed too
            error = f"{error}; power off also failed: {exc}"
    with ctx.db.session() as s:
        node = s.get_one(Node, node_id)
        if not _still_ours(node, actor, error):
            return
        forget_plan(node)
        # The operation is over: its boot script goes, its agent token dies.
        info = dict(node.driver_internal_info or {})
        forget_netboot(info)
        node.driver_internal_info = info
        agent_sessions.end(s, node_id)
        node.recent_failures = (node.recent_failures or 0) + 1
        lifecycle.fire_node(s, node, "fail", actor=actor, error=error)
    artefacts.clean_up(ctx.netboot_root, node_id)
    log.warning("node %s failed: %s", node_id, error)
