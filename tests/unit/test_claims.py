"""Claims under concurrency: SKIP LOCKED batches never turn into a false no-valid-host."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from portal.core.models import Node
from scheduler.claim import claim
from scheduler.request import RequestSpec
from scheduler.select import candidates
from tests.helpers import make_available


def _spec() -> RequestSpec:
    return RequestSpec(project_id="p", resource_class="baremetal", vcpus=4, ram_mb=8192, disk_gb=50)


def test_a_batch_locked_elsewhere_is_skipped_then_waited_for(ctx: Any, jobs: Any) -> None:
    if ctx.db.engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite runs one writer at a time")
    (node_id,) = make_available(ctx, 1, jobs)
    holder = ctx.db.sessionmaker()
    seen = [n.id for n in candidates(holder, _spec(), skip_locked=True)]
    assert seen == [node_id]  # the other transaction now holds the row

    with ctx.db.session() as s:  # a second scheduler skips it: an empty batch ...
        assert candidates(s, _spec(), skip_locked=True) == []

    claimed: list[bool] = []

    def second_round() -> None:  # ... so its next round reads without skipping and waits
        with ctx.db.session() as s:
            ranked = candidates(s, _spec())
            claimed.append(any(claim(s, n.id, str(uuid.uuid4()), "b") for n in ranked))

    waiter = threading.Thread(target=second_round)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # blocked on the first scheduler's row lock
    holder.rollback()  # the first scheduler did not take the node after all
    holder.close()
    waiter.join(10)
    assert claimed == [True]
    with ctx.session() as s:
        assert s.get_one(Node, node_id).reservation == "b"
