"""The outbox is read in commit order: a consumer that remembers the last id never skips."""

from __future__ import annotations

from sqlalchemy import select

from portal.core import events, outbox
from portal.core.models import Event


def _read(ctx, marker=None):
    with ctx.db.session() as s:
        return [e.resource_id for e in s.scalars(outbox.ordered_after(s, select(Event), marker))]


def test_events_read_after_marker_in_order(ctx):
    for name in ("a", "b", "c"):
        with ctx.session() as s:
            events.record(s, "test", "thing", name)
    assert _read(ctx) == ["a", "b", "c"]
    with ctx.session() as s:
        first = s.scalar(select(Event.id).where(Event.resource_id == "a"))
    assert _read(ctx, first) == ["b", "c"]


def test_an_event_committed_late_is_not_skipped(ctx):
    """Transaction A inserts first (lower id) but commits after B: on PostgreSQL a reader
    sees neither until A is done, then both, A's first. SQLite serializes the writers, so
    there B simply waits for A and ids are in commit order already."""
    if ctx.db.dialect != "postgresql":
        first = ctx.db.sessionmaker()
        events.record(first, "test", "thing", "early")
        first.commit()
        with ctx.session() as s:
            events.record(s, "test", "thing", "late")
        assert _read(ctx) == ["early", "late"]
        return
    a = ctx.db.sessionmaker()
    events.record(a, "test", "thing", "from-a")
    a.flush()  # A holds the lower id, still uncommitted
    with ctx.session() as b:
        events.record(b, "test", "thing", "from-b")
    assert _read(ctx) == []  # B's event waits behind A, which could still commit a lower id
    a.commit()
    a.close()
    seen = _read(ctx)
    assert seen == ["from-a", "from-b"]
