"""Run BMC calls in child processes, each with a hard deadline.

Why a process per call: pyghmi's IPMI client deadlocks when several threads of one process
talk to BMCs, keeps module-level sessions, and can block far longer than any sane timeout on
a dead BMC. A forked child gets a clean client, its own sockets, and can be killed: one dead
BMC never stalls a job or the other BMCs of a power-sync pass. Forking is cheap (a few ms)
next to a BMC login (~0.7 s on IPMI), and the callers are single-threaded (RQ workers, the
power-sync process), which is what makes ``fork`` safe here.

A call made from inside a child (a driver method calling another) runs inline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from portal.core.secrets import scrub
from workers.drivers.base import URL_CREDENTIALS, DriverError, ErrorKind

# Set in the child right after the fork: nested calls run inline instead of forking again.
_in_child = False


@dataclass(frozen=True)
class Call:
    """One BMC operation: ``fn(*args)`` must return something picklable."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    timeout: float
    # Strings that must never appear in an error message (the BMC password).
    secrets: tuple[str, ...] = ()
    label: str = "BMC call"


@dataclass
class Outcome:
    value: Any = None
    error: DriverError | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def redact(text: str, secrets: Sequence[str]) -> str:
    return scrub(text, secrets)


class ScrubLogs(logging.Filter):
    """A handler filter: log records (of the BMC libraries too) lose the call's secrets
    and any password written in a URL before they are written anywhere."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = URL_CREDENTIALS.sub(r"\1:******@", scrub(text, self.secrets))
        if clean != text:
            record.msg, record.args = clean, ()
        return True


def _scrub_logs(secrets: Sequence[str]) -> None:
    """In a child: every handler it inherited scrubs what the BMC libraries log."""
    scrubber = ScrubLogs(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(scrubber)


def _child(
    conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...], secrets: Sequence[str] = ()
) -> None:
    global _in_child
    _in_child = True
    _scrub_logs(secrets)
    try:
        conn.send(("ok", fn(*args)))
    except DriverError as exc:
        conn.send(("error", exc.kind, str(exc)))
    except BaseException as exc:  # anything else crossing the process boundary, as text
        conn.send(("error", ErrorKind.ERROR, f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _check_forkable() -> None:
    """pyghmi used in *this* process leaves an I/O thread and session caches that a forked
    child inherits without the thread: every pyghmi call in the child then hangs. Parents
    may import pyghmi (``preload_libraries``) but never call it; fail loudly if one did."""
    session = sys.modules.get("pyghmi.ipmi.private.session")
    if session is not None and getattr(session, "iothread", None) is not None:
        raise DriverError(
            "pyghmi was used directly in this process, so forked BMC calls would hang; "
            "BMC calls must go through workers.drivers.isolation",
            ErrorKind.ERROR,
        )


def _fork(call: Call) -> tuple[int, Connection]:
    """A child running ``call``; its answer arrives on the returned connection.

    A bare ``os.fork`` rather than ``multiprocessing.Process``: the power sync runs in a
    daemonic process, which multiprocessing forbids to have children, and nothing of
    multiprocessing's bookkeeping is needed for a child that lives for one call.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, then leave without running the parent's exit hooks
        try:
            os.close(read_fd)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _child(Connection(write_fd, readable=False), call.fn, call.args, call.secrets)
        finally:
            os._exit(0)
    os.close(write_fd)
    return pid, Connection(read_fd, writable=False)


def _error(call: Call, kind: str, message: str) -> DriverError:
    return DriverError(redact(message, call.secrets), kind)


def run(call: Call) -> Any:
    """Run one call; its value, or raises :class:`DriverError` (timeout → unreachable)."""
    if _in_child:
        try:
            return call.fn(*call.args)
        except DriverError as exc:
            raise _error(call, exc.kind, str(exc)) from None
    outcome = run_many([call], slots=1)[0]
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


@dataclass
class _Running:
    index: int
    call: Call
    pid: int
    conn: Connection
    started: float
    holds_slot: bool = True


def run_many(
    calls: Sequence[Call], slots: int, slot_time: float | None = None, max_in_flight: int = 0
) -> list[Outcome]:
    """Run ``calls`` with at most ``slots`` of them working at once; outcomes in call order.

    A call still running after ``slot_time`` seconds gives its slot back and goes on
    waiting (until its own timeout) in the background, up to ``max_in_flight`` processes in
    all: BMCs that do not answer cost a slot for ``slot_time``, not for the whole timeout,
    so a pass with dead BMCs grows by about one timeout, not one per dead BMC.
    """
    _check_forkable()
    slots = max(1, slots)
    max_in_flight = max(max_in_flight, slots)
    outcomes = [Outcome() for _ in calls]
    pending = list(range(len(calls)))[::-1]
    running: dict[Connection, _Running] = {}

    def busy_slots() -> int:
        return sum(1 for r in running.values() if r.holds_slot)

    while pending or running:
        while pending and busy_slots() < slots and len(running) < max_in_flight:
            index = pending.pop()
            pid, recv = _fork(calls[index])  # EOF on recv: the child died
            running[recv] = _Running(index, calls[index], pid, recv, time.monotonic())
        now = time.monotonic()
        deadlines = [r.started + r.call.timeout for r in running.values()]
        if slot_time is not None:
            deadlines += [r.started + slot_time for r in running.values() if r.holds_slot]
        ready = wait(list(running), timeout=max(0.0, min(deadlines) - now))
        now = time.monotonic()
        for conn in ready:
            r = running.pop(conn)  # type: ignore[call-overload]
            outcomes[r.index] = _collect(r, now)
        for conn, r in list(running.items()):
            if now >= r.started + r.call.timeout:
                os.kill(r.pid, signal.SIGKILL)
                running.pop(conn)
                _reap(r)
                outcomes[r.index] = Outcome(
                    error=_error(
                        r.call,
                        ErrorKind.UNREACHABLE,
                        f"{r.call.label}: no answer within {r.call.timeout:g} s",
                    ),
                    seconds=now - r.started,
                )
            elif slot_time is not None and r.holds_slot and now >= r.started + slot_time:
                r.holds_slot = False
    return outcomes


def _collect(r: _Running, now: float) -> Outcome:
    try:
        message = r.conn.recv()
    except (EOFError, OSError):
        message = ("error", ErrorKind.ERROR, f"{r.call.label}: the worker process died")
    _reap(r)
    if message[0] == "ok":
        return Outcome(value=message[1], seconds=now - r.started)
    return Outcome(error=_error(r.call, message[1], message[2]), seconds=now - r.started)


def _reap(r: _Running) -> None:
    r.conn.close()
    # It has answered or been killed: this does not block long. ChildProcessError: reaped
    # already (e.g. by a SIGCHLD handler).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(r.pid, 0)
