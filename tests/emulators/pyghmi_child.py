"""A real pyghmi IPMI ``Command`` that lives in a separate Python process.

Why: once a process has used pyghmi's IPMI client, pyghmi's module state (its I/O worker
thread, session caches) is inherited by every ``os.fork()`` child, where the worker thread
no longer exists, so a ``Command`` in the child waits forever. Tests that talk to a BMC with
pyghmi directly must therefore not do it in the pytest process when code under test forks
per BMC call (``workers/drivers/isolation.py``). ``PyghmiChild`` keeps one ``Command`` in a
freshly started interpreter (not a fork) and forwards method calls over a pipe (JSON lines).

    with PyghmiChild(**sim.pyghmi_kwargs()) as ipmi:
        ipmi.call("set_power", "on", wait=True)

Exceptions raised in the child are re-raised here as the same class when it can be imported
and built from its message (``pyghmi.exceptions.IpmiException``...), else ``RemoteError``.
Generators are returned as lists; objects (``SensorReading``) as dicts of their attributes.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import select
import subprocess
import sys
import time
from types import TracebackType
from typing import Any

_CHILD = r"""
import base64, json, sys, types

def enc(value):
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): enc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, types.GeneratorType)):
        return [enc(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "__dict__"):
        return {k: enc(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)

def dec(value):
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {k: dec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [dec(v) for v in value]
    return value

out = sys.stdout
sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
command = None
for line in sys.stdin:
    req = json.loads(line)
    try:
        if req["op"] == "init":
            from pyghmi.ipmi.command import Command
            command = Command(**dec(req["kwargs"]))
            result = None
        else:
            result = getattr(command, req["method"])(*dec(req["args"]), **dec(req["kwargs"]))
            if isinstance(result, types.GeneratorType):
                result = list(result)
        reply = {"ok": enc(result)}
    except BaseException as exc:
        cls = type(exc)
        reply = {"error": [cls.__module__, cls.__qualname__, str(exc)]}
    out.write(json.dumps(reply) + "\n")
    out.flush()
"""


class RemoteError(Exception):
    """An exception from the child whose class could not be rebuilt here."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


def _enc(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): _enc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_enc(v) for v in value]
    return value


def _dec(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {k: _dec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dec(v) for v in value]
    return value


def _rebuild(module: str, qualname: str, message: str) -> BaseException:
    try:
        cls = getattr(importlib.import_module(module), qualname)
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls(message)
    except Exception:  # not importable or not constructible from one string
        pass
    return RemoteError(f"{module}.{qualname}", message)


class PyghmiChild:
    """One pyghmi ``Command`` in a child interpreter; ``call()`` forwards method calls."""

    def __init__(self, *, login_timeout: float = 60.0, **command_kwargs: Any) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            self._request({"op": "init", "kwargs": _enc(command_kwargs)}, login_timeout)
        except BaseException:
            self.close()
            raise

    def call(self, method: str, *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """``Command.<method>(*args, **kwargs)`` in the child; TimeoutError (child killed) after."""
        return self._request(
            {"op": "call", "method": method, "args": _enc(list(args)), "kwargs": _enc(kwargs)},
            timeout,
        )

    def _request(self, req: dict[str, Any], timeout: float) -> Any:
        proc = self._proc
        if proc.poll() is not None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError("pyghmi child is not running")
        proc.stdin.write((json.dumps(req) + "\n").encode())
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise TimeoutError(f"pyghmi {req.get('method', 'login')}: no reply in {timeout}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                break
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pyghmi child exited ({proc.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise _rebuild(*reply["error"])
        return _dec(reply["ok"])

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> PyghmiChild:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
