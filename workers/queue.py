"""Enqueueing jobs. Jobs are top-level functions that take IDs, never objects."""

from __future__ import annotations

from typing import Any

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
