"""An enroll's writes: one INSERT on PostgreSQL (node, ports and event together), one per
table on SQLite; the rows hold exactly what the response says."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select

from portal.core import events as core_events
from portal.core.db import insert_now, new_uuid
from portal.core.models import Event, Node, Port
from tests.helpers import node_body, seed_world


@contextmanager
def statements(ctx) -> Iterator[list[str]]:
    seen: list[str] = []

    def on_execute(_conn, _cursor, statement, *_args) -> None:
        verb = statement.split(None, 1)[0].upper()
        if verb != "BEGIN":  # SQLite's explicit BEGIN (PostgreSQL's is not a statement here)
            seen.append(verb)

    event.listen(ctx.db.engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", on_execute)


def test_enroll_writes_in_one_statement_on_postgresql(ctx, client) -> None:
    admin = seed_world(ctx).admin
    body = node_body(3, ports=[{"address": "52:54:00:00:03:01"}, {"address": "52:54:00:00:03:02"}])
    client.post("/v1/nodes", json=node_body(1), headers=admin)  # warm: token, statements
    with statements(ctx) as seen:
        r = client.post("/v1/nodes", json=body, headers=admin)
    assert r.status_code == 201, r.json
    expected = ["WITH"] if ctx.db.engine.dialect.name == "postgresql" else ["INSERT"] * 3
    assert seen == expected
    node = r.json
    with ctx.session() as s:
        row = s.get(Node, node["uuid"])
        assert row is not None and row.name == "node-3" and row.provision_state == "enroll"
        assert row.properties == body["properties"] and row.created_at is not None
        ports = s.scalars(select(Port).where(Port.node_id == node["uuid"])).all()
        assert sorted((p.id, p.address) for p in ports) == sorted(
            (p["uuid"], p["address"]) for p in node["ports"]
        )
        created = s.scalars(select(Event).where(Event.resource_id == node["uuid"])).one()
        assert created.type == "node.created"
        assert created.payload["ports"] == ["52:54:00:00:03:01", "52:54:00:00:03:02"]
    assert client.get(f"/v1/nodes/{node['uuid']}", headers=admin).json == node


def test_several_events_keep_their_order(ctx) -> None:
    """Rows whose key the database assigns are not split over one statement's CTEs, where
    their order would not be promised: two events go in one ordered INSERT."""
    node = Node(id=new_uuid(), resource_class="baremetal", driver="fake", driver_info={})
    first = core_events.new("node.created", "node", node.id, actor="test")
    second = core_events.new("node.updated", "node", node.id, actor="test")
    with ctx.session() as s, statements(ctx) as seen:
        insert_now(s, [node, first, second])
        s.commit()
    assert seen == ["INSERT", "INSERT"]
    with ctx.session() as s:
        types = s.scalars(
            select(Event.type).where(Event.resource_id == node.id).order_by(Event.id)
        ).all()
    assert types == ["node.created", "node.updated"]


def test_a_clash_in_the_combined_statement_writes_nothing(ctx, client) -> None:
    admin = seed_world(ctx).admin
    assert client.post("/v1/nodes", json=node_body(1), headers=admin).status_code == 201
    clash = node_body(2, ports=[{"address": "52:54:00:00:09:09"}, node_body(1)["ports"][0]])
    r = client.post("/v1/nodes", json=clash, headers=admin)
    assert r.status_code == 409 and r.json["field"] == "address"
    with ctx.session() as s:
        assert s.scalars(select(Node.name)).all() == ["node-1"]
        assert (
            s.scalars(select(Port.address).where(Port.address == "52:54:00:00:09:09")).all() == []
        )
        assert s.scalars(select(Event.type).where(Event.type == "node.created")).all() == [
            "node.created"
        ]


def test_a_node_with_many_ports_is_written_table_by_table(ctx, client) -> None:
    """Past 16 rows one statement per row count is not worth caching: one INSERT per table."""
    admin = seed_world(ctx).admin
    macs = [f"52:54:00:00:05:{i:02x}" for i in range(20)]
    client.post("/v1/nodes", json=node_body(1), headers=admin)  # warm: token, statements
    with statements(ctx) as seen:
        r = client.post(
            "/v1/nodes", json=node_body(5, ports=[{"address": m} for m in macs]), headers=admin
        )
    assert r.status_code == 201, r.json
    assert seen == ["INSERT"] * 3
    assert sorted(p["address"] for p in r.json["ports"]) == macs
    with ctx.session() as s:
        stored = s.scalars(select(Port.address).where(Port.node_id == r.json["uuid"])).all()
    assert sorted(stored) == macs
