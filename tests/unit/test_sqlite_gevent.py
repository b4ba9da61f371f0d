"""SQLite under gevent (bms api's workers): a writer that waits for the database's write
lock must let the other greenlets of its process run.

SQLite waits for a lock in C (busy_timeout), which no greenlet can interrupt: while one
greenlet holds a write transaction and yields (any network call), another that begins a
write used to block the whole process until SQLite gave up (30 s), the holder included.
Run in a child process, as gevent's monkey-patching must not touch the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gevent")

CHILD = r"""
from gevent import monkey; monkey.patch_all()
import json, sys, time
import gevent
from sqlalchemy import text
from portal.core import db
db.cooperative_waits()
engine = db.make_engine("sqlite:///" + sys.argv[1])
with engine.begin() as c:
    c.execute(text("CREATE TABLE t (v INTEGER)"))
gaps, done = [], {}

def holder():
    with engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (1)"))
        gevent.sleep(1.0)  # a write transaction that yields (a network call, say)
    done["holder"] = time.monotonic()

def writer():
    gevent.sleep(0.1)
    started = time.monotonic()
    with engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (2)"))
    done["writer"] = time.monotonic() - started

def ticker():
    last = time.monotonic()
    for _ in range(30):
        gevent.sleep(0.05)
        now = time.monotonic()
        gaps.append(now - last)
        last = now

gevent.joinall([gevent.spawn(holder), gevent.spawn(writer), gevent.spawn(ticker)], timeout=20)
with engine.connect() as c:
    rows = sorted(r[0] for r in c.execute(text("SELECT v FROM t")))
print(json.dumps({"writer_waited": done.get("writer"), "max_gap": max(gaps), "rows": rows}))
"""


def test_a_waiting_sqlite_writer_lets_other_greenlets_run(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "g.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # The writer waited for the holder (about 0.9 s), cooperatively: the ticker kept ticking.
    assert result["rows"] == [1, 2]
    assert 0.5 < result["writer_waited"] < 3, result
    assert result["max_gap"] < 0.3, result
