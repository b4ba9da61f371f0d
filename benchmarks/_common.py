"""Helpers shared by the benchmark scripts: databases, environment, processes, statistics."""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_VAR = REPO_ROOT / "var" / "bench"
PG_SERVER = os.environ.get("BMS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BMS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def recreate_postgres(dbname: str) -> str:
    """Drop and create ``dbname`` on the local server; return its SQLAlchemy URL."""
    if not dbname.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {dbname!r}")
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{dbname}"'))
    finally:
        admin.dispose()
    return f"{PG_SERVER}/{dbname}"


def drop_postgres(dbname: str) -> None:
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
    finally:
        admin.dispose()


def bench_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The portal's environment for one benchmark: its own database, queue and var dir."""
    var_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "BMS_VAR_DIR": str(var_dir),
        "BMS_QUEUE": f"bench-{uuid.uuid4().hex[:10]}",
        "BMS_SECRET_KEYS": Fernet.generate_key().decode(),
        # A /16 provider pool, so a benchmark never runs out of instance addresses.
        "BMS_PROVIDER_CIDR": "10.200.0.0/16",
        "BMS_PROVIDER_POOL": "10.200.0.10-10.200.255.250",
        "BMS_PROVIDER_GATEWAY": "10.200.0.1",
        "BMS_LOG_JSON": "0",
        **extra,
    }
    return env


def apply_env(env: Mapping[str, str]) -> None:
    os.environ.update(env)


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(env)
    merged["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), merged.get("PYTHONPATH", "")) if p
    )
    return merged


def purge_rq_queue(redis: Any, queue_name: str) -> int:
    """Delete what an RQ queue left in Redis: its registries, its jobs and their results.

    Only keys of ``queue_name`` and of the jobs found in its registries are touched.
    Returns the number of jobs purged.
    """
    keys = list(redis.scan_iter(match=f"rq:*:{queue_name}"))
    job_ids: set[str] = set()
    for key in keys:
        kind = redis.type(key)
        if kind == b"zset":
            members = redis.zrange(key, 0, -1)
        elif kind == b"list":
            members = redis.lrange(key, 0, -1)
        else:
            continue
        # Registry members are "<job id>" or "<job id>:<execution id>".
        job_ids.update(m.decode().split(":")[0] for m in members)
    for job_id in job_ids:
        redis.delete(
            f"rq:job:{job_id}",
            f"rq:results:{job_id}",
            f"rq:executions:{job_id}",
            f"rq:job:{job_id}:dependents",
        )
    if keys:
        redis.delete(*keys)
    redis.srem("rq:queues", f"rq:queue:{queue_name}")
    return len(job_ids)


def stop_group(proc: subprocess.Popen[bytes] | None, grace: float = 20.0) -> None:
    """SIGTERM the process group started with ``start_new_session``; SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"process exited with status {proc.returncode} before {url} answered"
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _proc_stats() -> list[tuple[str, list[str]]]:
    """(comm, fields after the comm) for every process that can be read right now."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue  # exited meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        out.append((comm, stat[stat.rindex(")") + 2 :].split()))
    return out


def _cpu(fields: list[str]) -> float:
    # utime, stime, cutime, cstime: children that exited count once, in their reaper.
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def session_cpu_seconds(sessions: set[int]) -> float:
    """CPU of every process in the given sessions (process groups started with
    ``start_new_session``), including their reaped children (RQ's work horses)."""
    return sum(_cpu(f) for _, f in _proc_stats() if int(f[3]) in sessions)


def postgres_cpu_seconds() -> float:
    """CPU of the local PostgreSQL server: every ``postgres`` process, and through the
    postmaster's cutime/cstime every backend that already exited (all databases)."""
    return sum(_cpu(f) for comm, f in _proc_stats() if comm.startswith("postgres"))


@dataclass
class CpuUse:
    """CPU seconds used between two :func:`cpu_sample` calls."""

    wall: float = 0.0
    machine: float = 0.0  # every process on the machine
    own: float = 0.0  # this process (client, in-process API)
    sessions: float = 0.0  # the servers / workers we started
    postgres: float = 0.0  # the PostgreSQL server, all databases

    @property
    def foreign_share(self) -> float:
        """Share of the machine busy with something else than ours (incl. PostgreSQL)."""
        other = self.machine - self.own - self.sessions - self.postgres
        return max(0.0, other) / (self.wall * (os.cpu_count() or 1)) if self.wall else 0.0

    def __add__(self, other: CpuUse) -> CpuUse:
        return CpuUse(
            self.wall + other.wall,
            self.machine + other.machine,
            self.own + other.own,
            self.sessions + other.sessions,
            self.postgres + other.postgres,
        )


def cpu_sample(sessions: set[int]) -> CpuUse:
    times = os.times()
    return CpuUse(
        wall=time.monotonic(),
        machine=machine_cpu_seconds(),
        own=times.user + times.system,
        sessions=session_cpu_seconds(sessions),
        postgres=postgres_cpu_seconds(),
    )


def cpu_used(start: CpuUse, sessions: set[int]) -> CpuUse:
    end = cpu_sample(sessions)
    return CpuUse(
        end.wall - start.wall,
        end.machine - start.machine,
        end.own - start.own,
        end.sessions - start.sessions,
        end.postgres - start.postgres,
    )


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all processes, all cores)."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def busy_fraction(seconds: float = 1.0) -> float:
    """Share of the machine's CPU (all cores) that was busy over the next ``seconds``."""
    before, wall0 = machine_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - wall0
    return (machine_cpu_seconds() - before) / (elapsed * (os.cpu_count() or 1))


_PROBE_DOC = {
    "items": [{"i": i, "s": "x" * 20, "l": [1, 2, 3], "d": {"k": "v"}} for i in range(4000)]
}


def cpu_probe(rounds: int = 7) -> float:
    """Milliseconds for a fixed single-threaded Python workload (JSON encode + decode).

    This machine is a VM whose speed was seen to change by about 2x from one ten-second
    window to the next with nothing else running on it; the probe, printed with every
    result, tells a fast window (about 5-6 ms here) from the usual slow one (11-13 ms).
    """
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        json.loads(json.dumps(_PROBE_DOC))
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def wait_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (up to ``max_wait`` s) until the machine is < ``threshold`` busy; return the share.

    Other work on the machine (a test suite, another benchmark) skews every figure here;
    the share seen last is printed with the results.
    """
    deadline = time.monotonic() + max_wait
    busy = busy_fraction()
    while busy >= threshold and time.monotonic() < deadline:
        busy = busy_fraction(2.0)
    if busy >= threshold:
        log(f"machine still {busy:.0%} busy after waiting {max_wait:.0f} s; measuring anyway")
    return busy


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def machine_line() -> str:
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" load average {loadavg()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join([line, sep, *body])
