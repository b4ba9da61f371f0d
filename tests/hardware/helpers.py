"""Shared steps of the real-BMC tests: enroll through the API, run jobs, read the node."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from workers.context import WorkerContext

# Distinctive, so a grep of every captured log for it means something (IPMI: ≤ 20 bytes).
PASSWORD = "Zq7-bmc-Secret-91"


def enroll(
    client: Any,
    admin: dict[str, str],
    name: str,
    driver: str,
    info: dict[str, Any],
    macs: tuple[str, ...] = (),
) -> dict[str, Any]:
    body = {
        "name": name,
        "driver": driver,
        "driver_info": info,
        "resource_class": "baremetal",
        "properties": {"cpus": 2, "memory_mb": 2048, "local_gb": 10, "cpu_arch": "x86_64"},
        "ports": [{"address": m} for m in macs],
    }
    r = client.post("/v1/nodes", json=body, headers=admin)
    assert r.status_code == 201, r.json
    return dict(r.json)


def act(client: Any, admin: dict[str, str], node: str, target: str) -> Any:
    r = client.put(f"/v1/nodes/{node}/states/provision", json={"target": target}, headers=admin)
    assert r.status_code == 202, r.json
    return r.json


def power(client: Any, admin: dict[str, str], node: str, target: str) -> None:
    r = client.put(f"/v1/nodes/{node}/states/power", json={"target": target}, headers=admin)
    assert r.status_code == 202, r.json


def get(client: Any, admin: dict[str, str], node: str, path: str = "") -> dict[str, Any]:
    r = client.get(f"/v1/nodes/{node}{path}", headers=admin)
    assert r.status_code == 200, r.json
    return dict(r.json)


def worker_ctx(ctx: Any, **over: Any) -> WorkerContext:
    """A worker context on the test's database with some settings changed."""
    return WorkerContext.build(dataclasses.replace(ctx.settings, **over), db=ctx.db)


class LogCapture(logging.Handler):
    """Every log record at DEBUG and up, formatted with its arguments (works with or
    without pytest's logging plugin, and in forked children that share the handler)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __enter__(self) -> LogCapture:
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)
