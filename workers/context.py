"""What a job needs to run: settings, database, cipher, queue. Built once per process."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq import Queue

from portal.core.config import Settings
from portal.core.db import Database
from portal.core.imagestore import ImageStore, LocalImageStore
from portal.core.secrets import Cipher, load_keys
from workers.drivers.registry import secret_fields
from workers.redis_conn import connect


@dataclass
class WorkerContext:
    settings: Settings
    db: Database
    cipher: Cipher
    redis: Redis
    queue: Queue

    @property
    def netboot_root(self) -> Path:
        return self.settings.var_dir / "netboot"

    @property
    def image_store(self) -> ImageStore:
        return LocalImageStore(self.settings.image_dir)

    @classmethod
    def build(cls, settings: Settings, db: Database | None = None) -> WorkerContext:
        if not settings.redis_url:
            raise RuntimeError(
                "REDIS_URL is not set: start the worker with `bms worker` or `bms up`"
            )
        redis = connect(settings.redis_url)
        return cls(
            settings=settings,
            db=db or Database(settings.database_url),
            cipher=Cipher(load_keys(settings.secret_keys, settings.var_dir), secret_fields),
            redis=redis,
            queue=Queue(
                settings.queue_name, connection=redis, default_timeout=settings.job_timeout
            ),
        )


@functools.cache
def current() -> WorkerContext:
    """The context of this worker process, from the environment it was started with."""
    return WorkerContext.build(Settings.from_env())


def holder_name() -> str:
    """Who holds a node lock: the RQ worker's name, so the reconciler can tell if it died."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None and getattr(job, "worker_name", None):
        return str(job.worker_name)
    return f"local:{socket.gethostname()}:{os.getpid()}"
