"""The databases under gevent (bms api's workers): waiting on the database must let the
other greenlets of the process run.

SQLite: a writer that waits for the database's write lock.
SQLite waits for a lock in C (busy_timeout), which no greenlet can interrupt: while one
greenlet holds a write transaction and yields (any network call), another that begins a
write used to block the whole process until SQLite gave up (30 s), the holder included.
PostgreSQL: psycopg 3 is not patched by gevent; it must notice the patching and wait with
the patched ``select`` (with ``PSYCOPG_WAIT_FUNC=wait_c`` this test fails: a 1 s stall).
Each runs in a child process, as gevent's monkey-patching must not touch the test process.
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


PG_CHILD = r"""
from gevent import monkey; monkey.patch_all()
import json, sys, time
import gevent
from sqlalchemy import text
from portal.core import db
engine = db.make_engine(sys.argv[1])
gaps, done = [], {}

def slow():
    with engine.connect() as c:
        c.execute(text("SELECT pg_sleep(1)"))
    done["slow"] = time.monotonic()

def quick():
    gevent.sleep(0.1)
    started = time.monotonic()
    with engine.connect() as c:
        c.execute(text("SELECT 1"))
    done["quick"] = time.monotonic() - started

def ticker():
    last = time.monotonic()
    for _ in range(20):
        gevent.sleep(0.05)
        now = time.monotonic()
        gaps.append(now - last)
        last = now

gevent.joinall([gevent.spawn(slow), gevent.spawn(quick), gevent.spawn(ticker)], timeout=20)
print(json.dumps({"quick": done.get("quick"), "slow_done": "slow" in done, "max_gap": max(gaps)}))
"""


def test_psycopg_waits_on_postgresql_cooperatively(db_url: str) -> None:
    """psycopg 3 is not patched by gevent, but waits with the patched ``select`` once it
    sees gevent's patching: a 1 s query leaves the rest of the process running."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    out = subprocess.run(
        [sys.executable, "-c", PG_CHILD, db_url], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["slow_done"] and result["quick"] is not None, result
    assert result["quick"] < 0.5 and result["max_gap"] < 0.3, result
