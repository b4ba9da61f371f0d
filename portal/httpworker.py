"""The gunicorn worker ``bms api`` runs: gevent's, with a timeout on every client socket.

A gevent worker serves each connection in a greenlet, so a client that sends half a
request holds a few kilobytes of memory, not one of a handful of threads (with gunicorn's
threaded worker, eight such clients stopped the default stack). Bounds on top of gevent's:

- the request head must arrive within ``BMS_HEADER_TIMEOUT`` (gunicorn's keep-alive
  timeout, which gevent's worker also applies while it reads a head);
- every later read of the body, and every write of the answer, may wait at most
  ``BMS_READ_TIMEOUT`` for the client; a stalled body is answered 408
  (``portal.api.limits.StallGuard``) and the connection closed.

psycopg 3 waits cooperatively once gevent has patched ``select``; redis-py and
``requests`` use patched sockets; SQLite's wait for its write lock is made cooperative
(``portal.core.db``, which sees gevent's patching).
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

from portal.core.config import Settings


class GeventWorker(_GeventWorker):
    read_timeout: float = 30.0

    def init_process(self) -> None:
        self.read_timeout = Settings.from_env().read_timeout
        super().init_process()  # patch(), then the app is loaded

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        # gunicorn's gevent worker makes the socket blocking with no timeout at all.
        client.settimeout(self.read_timeout)
        AsyncWorker.handle(self, listener, client, addr)
