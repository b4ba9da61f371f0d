"""A test double of the portal's agent API (protocol v1 of docs/deploy.md).

Enough of the protocol for the shell agent's unit tests: lookup by MAC and boot token (the
agent token handed out once), heartbeats that hand out queued commands, results, the
``?format=env`` answers, and static files (images, config drives) under ``/files/``.
When every queued command has a result and ``end_when_done`` is set, heartbeats get 403
(the operation is over), which makes the agent exit.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, urlsplit


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``{"command": {"args": {"url": u}}}`` → ``[("command_args_url", u)]``; None → ""."""
    if isinstance(obj, dict):
        if not obj and prefix:
            return [(prefix, "")]
        out: list[tuple[str, str]] = []
        for k, v in obj.items():
            out += flatten(v, f"{prefix}_{k}" if prefix else k)
        return out
    if obj is None:
        return [(prefix, "")]
    if isinstance(obj, bool):
        return [(prefix, "true" if obj else "false")]
    if isinstance(obj, list):
        return [(prefix, json.dumps(obj))]
    return [(prefix, str(obj))]


def env_format(obj: dict[str, Any]) -> bytes:
    return "".join(f"{k}={quote(v, safe='')}\n" for k, v in flatten(obj)).encode()


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class PortalDouble:
    macs: set[str]
    boot_token: str = "boot-token"
    node_id: str = "node-1"
    agent_token: str = 'agent-token-"x"'
    heartbeat_interval: float = 0.2
    end_when_done: bool = True
    commands: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    handed_out: list[str] = field(default_factory=list)
    lookups: int = 0
    lookup_404s: int = 0  # answer this many lookups with 404 first
    callbacks: list[Any] = field(default_factory=list)  # POST /callback (the test image)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, **args: Any) -> str:
        cid = f"c{len(self.commands) + 1}"
        self.commands.append({"id": cid, "name": name, "args": args})
        return cid

    @property
    def done(self) -> bool:
        return all(c["id"] in self.results for c in self.commands)

    def wait(self, pred: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred():
                    return
            time.sleep(0.02)
        raise AssertionError(f"timed out; calls: {[c.path for c in self.calls]}")

    # --- handlers ---
    def handle(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append(Call(path, headers, body))
            if path == "/callback":
                self.callbacks.append(body)
                return 200, {}
            if path == "/v1/agent/lookup":
                return self._lookup(body)
            if headers.get("x-agent-token") != self.agent_token:
                return 401, {"error": "bad token"}
            if path == "/v1/agent/heartbeat":
                return self._heartbeat(body)
            if path.startswith("/v1/agent/commands/") and path.endswith("/result"):
                cid = path.split("/")[4]
                if cid not in self.handed_out:
                    return 404, {"error": "no such command"}
                self.results[cid] = body
                return 202, {}
            return 404, {"error": "not found"}

    def _lookup(self, body: Any) -> tuple[int, dict[str, Any]]:
        self.lookups += 1
        if self.lookups <= self.lookup_404s:
            return 404, {"error": "not waiting"}
        if body.get("boot_token") != self.boot_token or not set(body.get("macs", [])) & self.macs:
            return 404, {"error": "unknown"}
        if self.lookups > self.lookup_404s + 1:
            return 409, {"error": "token already handed out"}
        return 200, {
            "node_id": self.node_id,
            "token": self.agent_token,
            "heartbeat_interval": self.heartbeat_interval,
        }

    def _heartbeat(self, body: Any) -> tuple[int, dict[str, Any]]:
        if self.end_when_done and self.done and self.handed_out:
            return 403, {"error": "operation over"}
        if body.get("status") == "idle":
            for c in self.commands:
                if c["id"] not in self.handed_out:
                    self.handed_out.append(c["id"])
                    return 200, {"command": c}
        return 200, {"command": None}


class _Handler(BaseHTTPRequestHandler):
    double: PortalDouble

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        with self.double.lock:
            self.double.calls.append(
                Call(path, {k.lower(): v for k, v in self.headers.items()}, None)
            )
        data = self.double.files.get(path.removeprefix("/files/"))
        if not path.startswith("/files/") or data is None:
            self._send(404, b"not found\n", "text/plain")
            return
        # As the portal: the image and the config drive are the agent's, token required.
        if self.headers.get("X-Agent-Token") != self.double.agent_token:
            self._send(401, b"agent token required\n", "text/plain")
            return
        self._send(200, data, "application/octet-stream")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, b'{"error": "bad json"}', "application/json")
            self.double.calls.append(Call(url.path, {}, raw.decode("utf-8", "replace")))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, answer = self.double.handle(url.path, headers, body)
        if "format=env" in url.query:
            self._send(status, env_format(answer), "text/plain")
        else:
            self._send(status, json.dumps(answer).encode(), "application/json")


class Server:
    """The double on 127.0.0.1 (``host`` for QEMU's user network: 10.0.2.2 maps here)."""

    def __init__(self, double: PortalDouble) -> None:
        handler = type("Handler", (_Handler,), {"double": double})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
