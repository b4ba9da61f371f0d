"""The portal's WSGI app wrapped with a ``Server-Timing`` header, for benchmarks only.

``gunicorn benchmarks.timed_wsgi:app`` serves exactly ``wsgi.app`` (the production entry
point) with one addition: every response carries ``Server-Timing: app;dur=<ms>``, the time
from gunicorn calling the WSGI application until the application calls ``start_response``.
Flask builds the whole body (database, serialization, JSON encoding) before it calls
``start_response``, so this is the server's own time for the request, without the HTTP
parsing and socket writes gunicorn does around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from wsgi import app as portal_app

StartResponse = Callable[..., Any]


class ServerTiming:
    def __init__(self, wrapped: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]):
        self.wrapped = wrapped

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()

        def timed_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            elapsed_ms = (time.perf_counter() - started) * 1000
            headers.append(("Server-Timing", f"app;dur={elapsed_ms:.3f}"))
            return start_response(status, headers, exc_info)

        return self.wrapped(environ, timed_start)


app = ServerTiming(portal_app)
