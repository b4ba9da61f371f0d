"""Enqueueing jobs. Jobs are top-level functions that take IDs, never objects."""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from rq import Queue, Retry

# Retries for a job that found its node locked by another operation.
LOCK_RETRY = Retry(max=60, interval=[1, 2, 5])


def enqueue(queue: Queue, func: str, *args: Any, **options: Any) -> str:
    """Enqueue ``workers.jobs.<func>``; returns the job id (kept on the resource)."""
    job = queue.enqueue_call(
        f"workers.jobs.{func}",
        args=args,
        timeout=options.pop("timeout", None),
        result_ttl=options.pop("result_ttl", 3600),
        failure_ttl=options.pop("failure_ttl", 7 * 24 * 3600),
        retry=options.pop("retry", None),
        **options,
    )
    return str(job.id)


def call(queue: Queue, func: str, *args: Any, wait: int) -> Any:
    """Run ``workers.jobs.<func>`` on a worker and wait up to ``wait`` s for its return value.

    For reads the API must answer synchronously (sensors): queued at the front, kept
    briefly, and given up after ``wait`` (None) so a request never hangs on a dead worker.
    """
    job = queue.enqueue_call(
        f"workers.jobs.{func}",
        args=args,
        at_front=True,
        timeout=wait,
        ttl=wait,  # not started by then: nobody is waiting for it any more
        result_ttl=60,
        failure_ttl=3600,
    )
    try:
        result = job.latest_result(timeout=wait)
    except redis.exceptions.TimeoutError:  # the connection's socket timeout came first
        result = None
    if result is None:
        with contextlib.suppress(Exception):  # it may have expired already (ttl)
            job.cancel()
        return None
    if result.type != result.Type.SUCCESSFUL:
        return {
            "error": f"the job failed: {(result.exc_string or '').strip().splitlines()[-1:]}",
            "kind": "error",
        }
    return result.return_value
