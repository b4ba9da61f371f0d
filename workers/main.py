"""The worker entry point: an RQ worker plus the periodic reconciler."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from typing import Any

from sqlalchemy.orm import configure_mappers

from scheduler.select import SchedulerConfig
from workers.context import current
from workers.lease import Lease
from workers.pdeathsig import die_with_parent
from workers.rq_workers import WORKER_CLASSES

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"bms-{socket.gethostname()}-{os.getpid()}"


def _scheduler_dies_with_worker() -> None:
    """RQ forks its scheduler process from the worker (``with_scheduler``) and offers no
    hook for it: wrap its entry point so that it, too, dies with a ``kill -9``'d worker."""
    import rq.scheduler as rq_scheduler

    original = rq_scheduler.run
    if getattr(original, "bms_wrapped", False):
        return

    def run(scheduler: Any) -> None:
        die_with_parent(signal.SIGTERM)
        original(scheduler)

    run.bms_wrapped = True  # type: ignore[attr-defined]
    rq_scheduler.run = run


def run_worker(burst: bool = False, name: str | None = None, mode: str | None = None) -> bool:
    """Process jobs until stopped (or, with ``burst``, until the queue is empty).

    ``inline`` (the default) runs each job in this process, one at a time, keeping the
    database pool warm: forking a work horse per job cost ~150 ms of CPU per job. Jobs stay
    isolated from each other where it matters: one job at a time per process (pyghmi is
    not safe with many threads in one process, see docs/architecture.md), RQ's job timeout
    (SIGALRM) still applies, and no session outlives its job. ``fork`` is RQ's classic
    work horse per job, for drivers that must not share a process between jobs.
    """
    ctx = current()
    SchedulerConfig.from_settings(ctx.settings)  # a bad filter/weigher list fails here, not per job
    mode = mode or ctx.settings.worker_mode
    if mode not in WORKER_CLASSES:
        raise ValueError(f"BMS_WORKER_MODE must be one of {sorted(WORKER_CLASSES)}, not {mode!r}")
    # Do the per-process start-up once, here, so (in fork mode) every horse inherits it
    # instead of paying for it again: importing the jobs and configuring the ORM (~80 ms
    # of CPU) and the database dialect's first-connect set-up (~15 ms).
    import workers.jobs  # noqa: F401
    from workers.drivers.base import preload_libraries

    configure_mappers()
    preload_libraries()
    try:
        with ctx.db.engine.connect():
            pass
    except Exception as exc:  # horses will connect (and report) by themselves
        log.warning("database not reachable at worker start: %s", exc)
    # Connections are opened per process; drop any inherited pool before RQ forks horses.
    ctx.db.dispose()
    worker_class = WORKER_CLASSES[mode]
    _scheduler_dies_with_worker()
    name = name or worker_name()
    worker = worker_class([ctx.queue], connection=ctx.redis, name=name)
    # The lease is taken before the first job can take a node lock, and renewed by a
    # thread of this process: the reconciler knows this worker dead within one lease TTL.
    settings = ctx.settings
    held = Lease(settings.redis_url or "", name, settings.worker_lease, settings.worker_heartbeat)
    held.start()
    try:
        return worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
    finally:
        held.stop()


def reconcile_forever(interval: float) -> None:
    """Run the reconciler every ``interval`` seconds; one process at a time cluster-wide."""
    from workers.jobs.reconcile import reconcile

    die_with_parent()  # a kill -9'd worker must not leave its reconciler running
    ctx = current()
    while True:
        lock = ctx.redis.lock("bms:reconciler", timeout=max(interval * 2, 10), blocking=False)
        if lock.acquire(blocking=False):
            try:
                reconcile()
            except Exception:
                log.exception("reconciler run failed")
            finally:
                try:
                    lock.release()
                except Exception:
                    log.debug("reconciler lock expired before release")
        time.sleep(interval)


def start_reconciler(interval: float) -> multiprocessing.context.SpawnProcess:
    proc = multiprocessing.get_context("spawn").Process(
        target=reconcile_forever, args=(interval,), name="bms-reconciler", daemon=True
    )
    proc.start()
    return proc


def start_power_sync(interval: float) -> multiprocessing.context.SpawnProcess:
    """The power sync loop in a process of its own: it forks a child per BMC read, which is
    only safe from a single-threaded process that never ran pyghmi itself."""
    from workers.power_sync import sync_forever

    proc = multiprocessing.get_context("spawn").Process(
        target=sync_forever, args=(interval,), name="bms-power-sync", daemon=True
    )
    proc.start()
    return proc
