"""Helpers shared by the benchmark scripts: databases, environment, processes, statistics."""

from __future__ import annotations

import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

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


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` plus those of its children it has waited for (RQ's horses)."""
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[11..14] are utime, stime, cutime, cstime (stat fields 14..17).
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all processes, all cores)."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


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
