"""``bms up``'s children: started each in its own process group, restarted with backoff when
one dies, and stopped as whole groups so that nothing outlives ``bms up``.

- Each child leads its own process group, so stopping it signals the group: a worker
  and its reconciler and power-sync processes, gunicorn's master and its workers.
- Each child gets ``PR_SET_PDEATHSIG`` (``workers.pdeathsig``): if ``bms up`` itself is
  killed (even ``kill -9``), the kernel sends it SIGTERM.
- A child that exits while ``bms up`` runs is started again after a backoff (1 s,
  doubling to 30 s; back to 1 s once it has run for a minute).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from workers.pdeathsig import die_with_parent

BACKOFF_MIN, BACKOFF_MAX, HEALTHY_AFTER = 1.0, 30.0, 60.0


def _child_setup() -> None:
    die_with_parent(signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = BACKOFF_MIN
    restart_at: float | None = None
    restarts: int = 0
    _out: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.log is not None and self._out is None:
            self._out = open(self.log, "ab")  # noqa: SIM115 (lives as long as the child)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._out,
            stderr=subprocess.STDOUT if self._out else None,
            process_group=0,  # its own group: stopped as a whole
            preexec_fn=_child_setup,
        )
        self.started = time.monotonic()
        self.restart_at = None


class Supervisor:
    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.children: list[Child] = []
        self.say = say
        self.stopping = False

    def add(self, name: str, argv: list[str], log: Path | None = None) -> Child:
        child = Child(name, argv, log)
        child.start()
        self.children.append(child)
        return child

    def tick(self) -> None:
        """Notice dead children and restart them when their backoff has passed."""
        now = time.monotonic()
        for c in self.children:
            assert c.proc is not None
            if c.restart_at is None and c.proc.poll() is not None:
                _signal_group(c.proc.pid, signal.SIGTERM)  # its own children go with it
                if now - c.started >= HEALTHY_AFTER:
                    c.backoff = BACKOFF_MIN
                c.restart_at = now + c.backoff
                self.say(
                    f"{c.name} (pid {c.proc.pid}) exited with {c.proc.returncode}; "
                    f"restarting in {c.backoff:g} s"
                )
                c.backoff = min(c.backoff * 2, BACKOFF_MAX)
            elif c.restart_at is not None and now >= c.restart_at:
                c.restarts += 1
                c.start()
                self.say(f"{c.name} restarted (pid {c.proc.pid})")

    def run(self, poll: float = 0.5) -> None:
        """Supervise until SIGTERM or SIGINT, then stop everything."""

        def on_signal(*_: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not self.stopping:
            self.tick()
            time.sleep(poll)
        self.stop()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every child's group, then SIGKILL whatever is left after ``grace``."""
        procs = [c.proc for c in self.children if c.proc is not None]
        for p in procs:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
        for p in procs:  # the leader, and any member that outlived it
            _signal_group(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
