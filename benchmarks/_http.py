"""A lean keep-alive JSON client for sequential-request benchmarks.

``requests`` spends about 0.5 ms of the client's own CPU per call on this VM (building
the prepared request, cookies, adapters, urllib3's pool): measured against the same
gunicorn server, ``GET /healthz`` took 0.95 ms through a ``requests.Session`` and 0.39 ms
through ``http.client``. For strictly sequential requests that cost is added to every
round trip, whichever server is measured, so the sequential-enroll figures are taken
with this client (the standard library's ``http.client`` over one persistent
connection), for the portal and for Ironic alike; the portal's figure with
``requests`` is printed beside it.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise RuntimeError(f"HTTP {self.status}: {self.body[:500]!r}")


class KeepAliveClient:
    """One HTTP/1.1 connection, reopened if the server closes it; JSON in and out."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 60):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server dropped between requests: once more.
                self.close()
                if attempt == 2:
                    raise
                continue
            reply = Reply(
                response.status, {k.lower(): v for k, v in response.getheaders()}, payload
            )
            if response.will_close:
                self.close()
            return reply
        raise AssertionError("unreachable")

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        return self.request("POST", path, body)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
