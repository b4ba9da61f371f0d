"""DELETE /v1/nodes/{ident}/lock: an admin breaks a dead worker's lock, on the record."""

from __future__ import annotations

from sqlalchemy import select

from portal.core import lifecycle
from portal.core.db import utcnow
from portal.core.models import Event, Node
from tests.helpers import make_available, seed_world
from workers import lease

DEAD = "bms-host-gone-77"


def _cleaning_locked_by(ctx, node_id: str, holder: str) -> None:
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        lifecycle.fire_node(s, node, "manage")
        lifecycle.fire_node(s, node, "provide")
        node.reservation, node.reserved_at = holder, utcnow()


def test_admin_breaks_a_dead_workers_lock_and_the_node_moves_on(ctx, client, jobs):
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    _cleaning_locked_by(ctx, node_id, DEAD)
    # before: every action answers 409 "locked"
    r = client.put(
        f"/v1/nodes/{node_id}/states/power", json={"target": "power off"}, headers=w.admin
    )
    assert r.status_code == 409 and DEAD in r.json["detail"]
    assert client.delete(f"/v1/nodes/{node_id}/lock", headers=w.alice).status_code == 403
    r = client.delete(f"/v1/nodes/{node_id}/lock", headers=w.admin)
    assert r.status_code == 200, r.json
    assert r.json["reservation"] is None and r.json["provision_state"] == "cleaning"
    with ctx.session() as s:
        ev = s.scalars(select(Event).where(Event.type == "node.lock_broken")).one()
        assert ev.resource_id == node_id and ev.actor == "user:root"
        assert ev.payload["holder"] == DEAD and ev.payload["outcome"] == "resumed"
    jobs()  # the cleaning resumed, as the reconciler would have done
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert (node.provision_state, node.reservation) == ("available", None)
    r = client.delete(f"/v1/nodes/{node_id}/lock", headers=w.admin)
    assert r.status_code == 409 and "not locked" in r.json["detail"]


def test_a_live_holder_is_refused_unless_forced(ctx, client, jobs):
    w = seed_world(ctx)
    (node_id,) = make_available(ctx, 1, jobs)
    held = lease.Lease(ctx.settings.redis_url, "bms-busy-1", ttl=20, heartbeat=5)
    held.renew()
    try:
        _cleaning_locked_by(ctx, node_id, "bms-busy-1")
        r = client.delete(f"/v1/nodes/{node_id}/lock", headers=w.admin)
        assert r.status_code == 409 and "force=true" in r.json["detail"]
        r = client.delete(f"/v1/nodes/{node_id}/lock?force=true", headers=w.admin)
        assert r.status_code == 200 and r.json["reservation"] is None
    finally:
        held.stop()
    with ctx.session() as s:
        ev = s.scalars(select(Event).where(Event.type == "node.lock_broken")).one()
        assert ev.payload["forced"] is True and ev.payload["holder_alive"] is True
