"""The RQ worker classes ``bms worker`` runs (and the tests' in-process worker).

Both stop their pubsub listener with a bounded wait. RQ subscribes each worker to a
command channel, listened to by a redis-py thread that polls with a 60 s timeout; since
redis-py 8, ``PubSubWorkerThread.stop()`` joins that thread with no timeout, so every
worker shutdown took up to 60 s, and a worker whose Redis was gone (``bms up`` killed with
its embedded Redis) never finished shutting down: it outlived its parent.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from rq import SimpleWorker, Worker
from rq.worker import BaseWorker

from workers.pdeathsig import die_with_parent

UNSUBSCRIBE_WAIT = 1.0  # seconds; the listener thread is a daemon and dies with the process


class _BoundedUnsubscribe(BaseWorker):
    def unsubscribe(self) -> None:
        thread = self.pubsub_thread
        if not thread or self.pubsub is None:
            return
        with contextlib.suppress(Exception):  # Redis may be gone: nothing to tell it then
            self.pubsub.unsubscribe()
        try:
            thread.stop(timeout=UNSUBSCRIBE_WAIT)  # redis-py >= 8: stop() joins
        except TypeError:
            thread.stop()  # older redis-py: stop() only clears the thread's flag
        thread.join(timeout=UNSUBSCRIBE_WAIT)
        with contextlib.suppress(Exception):
            self.pubsub.close()


class InlineWorker(_BoundedUnsubscribe, SimpleWorker):
    """Runs each job in the worker process (``--mode inline``)."""


class ForkWorker(_BoundedUnsubscribe, Worker):
    """RQ's forking worker whose work horse dies with it: a ``kill -9``'d worker must not
    leave a horse behind that goes on writing to a node the reconciler has moved on."""

    def main_work_horse(self, job: Any, queue: Any) -> None:
        die_with_parent(signal.SIGKILL)
        super().main_work_horse(job, queue)


WORKER_CLASSES: dict[str, type[BaseWorker]] = {"inline": InlineWorker, "fork": ForkWorker}
