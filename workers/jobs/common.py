"""Helpers shared by jobs: locking a node for the length of an operation, failing cleanly."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from portal.core import lifecycle, locks
from portal.core.models import Node
from portal.core.states import POWER_OFF
from workers.context import WorkerContext
from workers.drivers.base import get_driver
from workers.runner import forget_plan, node_task, record_power

log = logging.getLogger(__name__)


@contextmanager
def node_lock(ctx: WorkerContext, node_id: str, holder: str) -> Iterator[None]:
    """Hold the node's lock while the block runs; raise :class:`NodeLocked` if it is taken.

    RQ retries a job that raised NodeLocked (see ``workers.queue.LOCK_RETRY``).
    """
    with ctx.db.session() as s:
        if not locks.acquire(s, node_id, holder):
            raise locks.NodeLocked(node_id)
    try:
        yield
    finally:
        with ctx.db.session() as s:
            locks.release(s, node_id, holder)


def fail_node(ctx: WorkerContext, node_id: str, error: str, actor: str, power_off: bool) -> None:
    """Move a node to its failure state with ``last_error``, powering it off if asked.

    Never raises: a failure while handling a failure must not leave the node in limbo.
    """
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
        forget_plan(node)
        node.recent_failures = (node.recent_failures or 0) + 1
        lifecycle.fire_node(s, node, "fail", actor=actor, error=error)
    log.warning("node %s failed: %s", node_id, error)
