"""Breaking a node's lock: an admin's way out when the worker that held it is gone.

The node is then moved on exactly as the reconciler would (``workers.jobs.recover``): a
deploy fails and its node is released, a delete or a cleaning resumes, an inspection or
a verification fails. While the holder's lease is live (the worker runs) the API refuses
unless forced: a forced break stops that worker's job at its next checkpoint (it finds
the lock gone and never touches the node again).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from portal.core import events, locks
from portal.core.errors import Conflict
from portal.core.models import Node
from portal.services.context import Context
from tenants.principal import Principal
from workers import lease
from workers.jobs.recover import recover


def break_lock(ctx: Context, s: Session, node: Node, force: bool, actor: Principal) -> Node:
    holder = node.reservation
    if not holder:
        raise Conflict(f"node {node.id} is not locked", state=node.provision_state)
    alive = bool(lease.live(ctx.queue.connection, [holder]))
    if alive and not force:
        raise Conflict(
            f"node {node.id} is locked by {holder}, a worker whose lease is live (it is "
            "running); wait for it, or break the lock with force=true",
            state=node.provision_state,
            holder=holder,
        )
    locks.release_loaded(node, holder)
    state = node.provision_state
    reason = f"lock of {holder} broken by {actor.actor} during '{state}'"
    outcome = recover(ctx, s, node, reason, actor.actor)
    events.record(
        s,
        "node.lock_broken",
        "node",
        node.id,
        actor=actor.actor,
        project_id=node.owner,
        holder=holder,
        holder_alive=alive,
        forced=force,
        state=state,
        outcome=outcome,
    )
    return node
