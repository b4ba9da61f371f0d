"""Everything a use case needs, built once per process by the app factory or the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rq import Queue
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.core.config import Settings
from portal.core.db import Database, new_uuid
from portal.core.imagestore import ImageStore, LocalImageStore
from portal.core.secrets import Cipher, load_keys
from tenants.auth import AuthBackend, LocalAuth
from tenants.quotas import Defaults
from workers import queue as jobqueue
from workers.drivers.registry import secret_fields
from workers.redis_conn import connect


@dataclass
class Context:
    settings: Settings
    db: Database
    cipher: Cipher
    store: ImageStore
    auth: AuthBackend = field(default_factory=LocalAuth)
    _queue: Queue | None = None

    @classmethod
    def build(cls, settings: Settings) -> Context:
        return cls(
            settings=settings,
            db=Database(settings.database_url),
            cipher=Cipher(load_keys(settings.secret_keys, settings.var_dir), secret_fields),
            store=LocalImageStore(settings.image_dir),
        )

    @property
    def queue(self) -> Queue:
        """The job queue, connected on first use: admin commands that enqueue nothing
        (migrations, imports, tokens) run without Redis."""
        if self._queue is None:
            if not self.settings.redis_url:
                raise RuntimeError(
                    "REDIS_URL is not set: workers need Redis (`bms up` starts an embedded one)"
                )
            self._queue = Queue(
                self.settings.queue_name,
                connection=connect(self.settings.redis_url),
                default_timeout=self.settings.job_timeout,
            )
        return self._queue

    @property
    def quota_defaults(self) -> Defaults:
        s = self.settings
        return Defaults(
            s.default_quota_instances,
            s.default_quota_vcpus,
            s.default_quota_ram_mb,
            s.default_quota_networks,
            s.default_quota_subnets,
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.db.session() as s:
            yield s

    def enqueue_after_commit(self, session: Session, func: str, *args: Any, **opts: Any) -> str:
        """Enqueue a job once ``session`` commits (never for a rolled-back change).

        The job id is chosen now so the caller can store it on the row it enqueues for.
        """
        job_id = new_uuid()

        def send(_session: Session) -> None:
            jobqueue.enqueue(self.queue, func, *args, job_id=job_id, **opts)

        event.listen(session, "after_commit", send, once=True)
        return job_id
