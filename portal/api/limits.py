"""Request limits: the most bytes a request body may have, per kind of request, and a
client that stalls in the middle of its body answered 408 (docs/reliability.md).

A body is refused from its ``Content-Length`` before a byte of it is read; a chunked body
(no length) is read through a stream capped at the limit, so the refusal comes as soon as
the limit is passed. Image data is streamed to the store and has its own, larger limit.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from portal.api import problems
from portal.core.config import Settings
from portal.core.errors import TooLarge

# (method, URL rule) of the requests with their own limit; every other body is JSON.
IMAGE_DATA = ("PUT", "/v1/images/<image_id>/file")
NODE_IMPORT = ("POST", "/v1/nodes/import")
CHUNK = 64 * 1024


@dataclass(frozen=True)
class BodyLimit:
    limit: int
    setting: str
    what: str


def body_limit(settings: Settings, method: str, rule: str | None) -> BodyLimit:
    if (method, rule) == IMAGE_DATA:
        return BodyLimit(settings.max_image_bytes, "BMS_MAX_IMAGE_BYTES", "image data")
    if (method, rule) == NODE_IMPORT:
        return BodyLimit(settings.max_import_bytes, "BMS_MAX_IMPORT_BYTES", "a node import")
    return BodyLimit(settings.max_body_bytes, "BMS_MAX_BODY_BYTES", "a request body")


def too_large(limit: BodyLimit) -> TooLarge:
    return TooLarge(
        f"{limit.what} may have at most {limit.limit} bytes ({limit.setting})",
        limit=limit.limit,
        setting=limit.setting,
    )


def install(app: Flask, settings: Settings) -> None:
    """Apply the limits to every request of ``app``."""
    app.wsgi_app = StallGuard(app.wsgi_app, settings.read_timeout)  # type: ignore[method-assign]

    @app.before_request
    def _limit_body() -> None:
        rule = request.url_rule.rule if request.url_rule is not None else None
        limit = body_limit(settings, request.method, rule)
        g.body_limit = limit
        if request.content_length is not None and request.content_length > limit.limit:
            raise too_large(limit)
        stream = request.environ.get("wsgi.input")
        if isinstance(stream, _GuardedInput):  # caps a chunked body as it is read
            stream.limit = limit.limit

    def _over_limit(_error: RequestEntityTooLarge) -> Response:
        limit = g.get("body_limit") or body_limit(settings, request.method, None)
        return problems.from_domain_error(too_large(limit))

    app.register_error_handler(RequestEntityTooLarge, _over_limit)


class StallGuard:
    """WSGI middleware around the request body: past the limit set for the request, a
    read raises 413 (Werkzeug's own cap cuts a chunked body short without an error); a read
    that times out (the server's socket timeout, set by ``portal.httpworker``) becomes a 408
    answer and the connection is closed after it (its read side is shut, so nothing waits
    for the rest of that body)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], timeout: float) -> None:
        self.app, self.timeout = app, timeout

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        stream = environ.get("wsgi.input")
        if stream is not None:
            sock = environ.get("gunicorn.socket")
            environ["wsgi.input"] = _GuardedInput(stream, sock, self.timeout)
        return self.app(environ, start_response)


class _GuardedInput:
    def __init__(self, stream: Any, sock: socket.socket | None, timeout: float) -> None:
        self._stream, self._sock, self._timeout = stream, sock, timeout
        self.limit: int | None = None
        self._read = 0

    def _count(self, data: bytes) -> bytes:
        self._read += len(data)
        if self.limit is not None and self._read > self.limit:
            raise RequestEntityTooLarge()
        return data

    def _stalled(self) -> RequestTimeout:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RD)
        return RequestTimeout(
            f"no byte of the request body came for {self._timeout:g} s (BMS_READ_TIMEOUT)"
        )

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # to the end, but never more than the limit in memory
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        try:
            return self._count(bytes(self._stream.read(size)))
        except TimeoutError:
            raise self._stalled() from None

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        try:
            return self._count(bytes(self._stream.readline(size)))
        except TimeoutError:
            raise self._stalled() from None

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
