"""Worker leases: how the reconciler tells a live lock holder from a dead one.

Each ``bms worker`` process owns a Redis key ``bms:lease:<worker name>`` with a short TTL
(``BMS_WORKER_LEASE``), refreshed every ``BMS_WORKER_HEARTBEAT`` seconds by a daemon
thread of that process. The thread dies with the process, so a ``kill -9``'d worker's
lease lapses within one TTL, whatever job it was running (RQ's own worker key lives as
long as the job timeout, an hour by default: useless for this).

The thread only ever touches its own Redis client (no pool shared with jobs) and never
logs while things go well: a BMC call forks a child from this process (see
``workers.drivers.isolation``), and a child must not inherit a lock that a thread held
at the moment of the fork and that the child needs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

from redis import Redis

PREFIX = "bms:lease:"


def key(name: str) -> str:
    return PREFIX + name


class Lease:
    """The lease of one worker process: taken by :meth:`start`, given back by :meth:`stop`."""

    def __init__(self, redis_url: str, name: str, ttl: float, heartbeat: float) -> None:
        if heartbeat <= 0 or ttl <= heartbeat:
            raise ValueError("BMS_WORKER_LEASE must be longer than BMS_WORKER_HEARTBEAT (> 0)")
        self.redis = Redis.from_url(redis_url)  # its own client: nothing shared with jobs
        self.name = name
        self.ttl_ms = int(ttl * 1000)
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        self.redis.set(key(self.name), b"1", px=self.ttl_ms)

    def start(self) -> Lease:
        """Take the lease now (before any job can take a node lock), then keep it fresh."""
        self.renew()
        self._thread = threading.Thread(target=self._loop, name="bms-lease", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.renew()
            except Exception:  # Redis away: retry next beat; the lease lapses if it stays away
                continue

    def stop(self) -> None:
        """Give the lease back: a worker that stops cleanly is known dead at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.heartbeat + 1)
        with contextlib.suppress(Exception):  # else it lapses by itself
            self.redis.delete(key(self.name))


def live(redis: Redis, names: Iterable[str]) -> set[str]:
    """The holders among ``names`` whose lease is live."""
    wanted = sorted({n for n in names if n})
    if not wanted:
        return set()
    with redis.pipeline(transaction=False) as p:
        for name in wanted:
            p.exists(key(name))
        found = p.execute()
    return {name for name, n in zip(wanted, found, strict=True) if n}
