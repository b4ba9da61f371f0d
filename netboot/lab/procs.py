"""Processes the lab starts and outlives: detached children, found again by pid + marker.

``bms lab up`` exits while dnsmasq, the BMCs and the VMs keep running, so nothing here relies
on being their parent. A process is "ours" when its command line contains a marker (a path
under the lab's directory); ``kill`` checks that before signalling, so a recycled pid is
never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something other than None/False; TimeoutError after."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.1f}s")
        time.sleep(interval)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``argv`` in its own session, stdio to ``log_path``; return its pid at once.

    The child is not waited for: it outlives the caller (and is reparented when it exits).
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def cmdline(pid: int) -> str | None:
    """The process's command line (arguments joined by spaces), None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def alive(pid: int | None, marker: str | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, its command line has ``marker``."""
    if not pid or pid <= 0:
        return False
    if not _running(pid):
        _reap(pid)
        return False
    if marker is None:
        return True
    for _ in range(20):  # the command line reads empty for a moment while a process execs
        line = cmdline(pid)
        if line:
            return marker in line
        if not _running(pid):
            return False
        time.sleep(0.005)
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def kill(pid: int | None, marker: str, *, timeout: float = 10.0, term_first: float = 0.0) -> None:
    """Stop our process ``pid`` (checked against ``marker``); wait until it is gone.

    ``term_first``: seconds to wait after SIGTERM before SIGKILL (0: SIGKILL at once).
    """
    if pid is None or not alive(pid, marker):
        return
    if term_first > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            poll_until(lambda: not alive(pid), timeout=term_first, what=f"pid {pid} exit")
    if alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    poll_until(lambda: not alive(pid), timeout=timeout, what=f"pid {pid} gone")


def _kernel_thread(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return True
    return bool(int(fields[6]) & 0x00200000)  # PF_KTHREAD in the flags field


def find(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker`` (not this process)."""
    skip = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        pid = int(entry.name)
        line = cmdline(pid)
        if line is None or (not line and _kernel_thread(pid)):
            continue
        if (marker in line if line else alive(pid, marker)) and _running(pid):
            found.append(pid)
    return found


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
    """Run a short command; its stdout. ``RuntimeError`` with stderr when it fails."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def kill_all(marker: str, *, timeout: float = 15.0) -> list[str]:
    """Kill every process whose command line has ``marker`` until none is left (a process
    caught mid-exec or just started is found on a later pass); what was killed."""
    killed: list[str] = []

    def none_left() -> bool:
        pids = find(marker)
        for pid in pids:
            line = cmdline(pid) or "?"
            kill(pid, marker, timeout=timeout)
            killed.append(f"{pid}: {line[:100]}")
        return not pids

    poll_until(none_left, timeout=timeout, what=f"no process left with {marker!r}")
    return killed
