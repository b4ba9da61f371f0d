"""``bms up`` supervises its children: a dead worker is restarted, nothing outlives bms up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import free_port as _free_port
from tests.helpers import wait_for as _wait

pytestmark = pytest.mark.e2e


def _table() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue  # a zombie is dead, only not reaped yet
        out[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd)
    return out


def _descendants(root: int) -> dict[int, str]:
    table, found, todo = _table(), {}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, cmd) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = cmd
                todo.append(pid)
    return found


def _alive(pids: set[int]) -> set[int]:
    return pids & set(_table())


def _workers(tree: dict[int, str], up: int) -> list[int]:
    table = _table()
    return [
        p
        for p, cmd in tree.items()
        if "portal.cli worker" in cmd and table.get(p, (0, ""))[0] == up
    ]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        BMS_VAR_DIR=str(tmp_path / "var"),
        BMS_SECRET_KEYS="Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMTI=",
        BMS_RECONCILE_INTERVAL="1",
        BMS_POWER_SYNC_INTERVAL="5",
    )
    argv = [sys.executable, "-m", "portal.cli", "up", "--no-demo", "--workers", "2"]
    proc = subprocess.Popen(
        [*argv, "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "up.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(base + "/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        _wait(healthy, 60, "bms up")
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()


def _full_tree(root: int) -> dict[int, str]:
    # the first worker runs the reconciler and power sync; gunicorn its workers; redis
    def ready() -> dict[int, str] | None:
        tree = _descendants(root)
        spawned = [c for c in tree.values() if "multiprocessing" in c]
        return tree if len(spawned) >= 2 and len(_workers(tree, root)) == 2 else None

    return dict(_wait(ready, 30, "every child of bms up"))


def test_a_killed_worker_is_restarted_and_stop_leaves_nothing(up: Any) -> None:
    proc, base = up
    tree = _full_tree(proc.pid)
    seen = set(tree)
    first = min(_workers(tree, proc.pid))  # worker-0: it has the reconciler + power sync
    helpers = {p for p, cmd in _descendants(first).items()}
    assert helpers, "worker-0 runs its helpers in child processes"
    os.kill(first, signal.SIGKILL)
    restarted = _wait(
        lambda: [p for p in _workers(_descendants(proc.pid), proc.pid) if p != first][1:] or None,
        20,
        "the killed worker restarted",
    )
    assert proc.poll() is None, "bms up kept running"
    assert requests.get(base + "/healthz", timeout=5).ok
    _wait(lambda: not _alive(helpers), 10, "the dead worker's helpers gone")
    seen |= set(_full_tree(proc.pid))
    assert restarted
    proc.send_signal(signal.SIGTERM)
    proc.wait(40)
    _wait(lambda: not _alive(seen), 10, f"no survivors of bms up: {_alive(seen)}")


def test_kill_9_of_bms_up_leaves_no_orphans(up: Any) -> None:
    proc, _ = up
    tree = _full_tree(proc.pid)
    proc.kill()
    proc.wait(5)
    seen = set(tree)
    try:
        _wait(lambda: not _alive(seen), 45, "every child of a kill -9'd bms up gone")
    except AssertionError:
        raise AssertionError({p: tree[p] for p in _alive(seen)}) from None
