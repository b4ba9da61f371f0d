"""Process plumbing shared by the emulators: free ports, process groups, deadlines.

Every child runs in its own session (process group) so ``kill()`` takes down anything it
spawned too; on Linux the child also gets SIGKILL when the thread that started it dies
(``PR_SET_PDEATHSIG``, only armed when started from the main thread, since the signal is
tied to the starting thread), and an ``atexit`` hook kills whatever is still alive.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


_handed_out: set[tuple[int, int]] = set()


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on ``host`` (TCP or UDP per ``kind``).

    Never the same port twice in one process: clients cache per address (pyghmi keeps
    IPMI sessions per host:port), so a new BMC must not inherit a dead one's address.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if (kind, port) not in _handed_out:
            _handed_out.add((kind, port))
            return port
    raise RuntimeError("no fresh port found")


try:  # loaded in the parent: the child only makes the call between fork and exec
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _set_pdeathsig() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


class ManagedProcess:
    """One child process in its own process group, output appended to ``log_path``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"already running: {self.argv[0]} (pid {self.pid})")
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in kill()
        in_main = threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_set_pdeathsig if in_main and _prctl is not None else None,
        )
        with _live_lock:
            _live.add(self)

    def terminate(self, grace: float = 20.0) -> bool:
        """SIGTERM the process group, as ``docker stop`` does; SIGKILL it if the leader is
        still up after ``grace`` seconds. True if it exited on SIGTERM."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self.kill()
            return True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
            graceful = True
        except subprocess.TimeoutExpired:
            graceful = False
        self.kill()  # also takes down what the leader may have left in its group
        return graceful

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the leader; idempotent."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        with _live_lock:
            _live.discard(self)
        self._close_log()

    def log_tail(self, limit: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode(errors="replace")

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@atexit.register
def _kill_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live)
    for proc in leftovers:
        proc.kill()


class EmulatedBmc(abc.ABC):
    """What both emulators share: one managed process on a port that survives restarts.

    Subclasses set ``port`` (0: pick one), ``_port_kind`` and ``_proc``, and implement
    ``_launch()`` (write the config for ``self.port``, return the started process),
    ``_wait_ready()`` and ``_lost_port(log_tail)`` (did start fail on a taken port?).
    """

    port: int
    _proc: ManagedProcess | None
    _port_kind: int = socket.SOCK_STREAM

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @abc.abstractmethod
    def _launch(self) -> ManagedProcess: ...

    @abc.abstractmethod
    def _wait_ready(self) -> None: ...

    def _lost_port(self, log_tail: str) -> bool:
        return True

    def start(self: T) -> T:
        """Start (or restart after ``stop()``: same port, same state); wait until it answers."""
        bmc = self
        assert isinstance(bmc, EmulatedBmc)
        if bmc.running:
            return self
        attempts = 3 if bmc.port == 0 else 1
        for attempt in range(attempts):
            if bmc.port == 0 or attempt > 0:
                bmc.port = free_port(bmc._port_kind)
            bmc._proc = proc = bmc._launch()
            try:
                bmc._wait_ready()
                return self
            except Exception:
                exited, tail = not proc.running, proc.log_tail()
                proc.kill()
                if exited and attempt + 1 < attempts and bmc._lost_port(tail):
                    continue  # lost the port race: another free port
                raise RuntimeError(
                    f"{type(bmc).__name__} on port {bmc.port} not ready; log:\n{tail}"
                ) from None
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGKILL the BMC (it "dies": no goodbye, the port stops answering); state on disk
        is kept for ``start()``."""
        if self._proc is not None:
            self._proc.kill()

    close = stop

    def __enter__(self: T) -> T:
        started: T = self.start()  # type: ignore[attr-defined]
        return started

    def __exit__(self, *exc: object) -> None:
        self.close()
