"""``bms api`` as production runs it (gunicorn with the worker class it chooses), on
SQLite and a free 127.0.0.1 port, with an admin token; for tests that need a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from portal import migrate
from portal.core.config import Settings
from portal.services.context import Context
from tests.helpers import seed_admin_and_tenant, stop_processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Api:
    base: str
    host: str
    port: int
    admin: str
    log: Path
    proc: subprocess.Popen[bytes] = field(repr=False)


@contextmanager
def serve_api(redis_url: str, tmp_path: Path, extra_env: dict[str, str]) -> Iterator[Api]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bms.sqlite'}",
        "REDIS_URL": redis_url,
        "BMS_VAR_DIR": str(tmp_path / "var"),
        "BMS_QUEUE": f"api-{port}",
        "BMS_SECRET_KEYS": "Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMTI=",
        "BMS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **extra_env,
    }
    settings = Settings.from_env(env)
    migrate.upgrade(settings.database_url)
    ctx = Context.build(settings)
    with ctx.session() as s:
        admin, _alice, _pa = seed_admin_and_tenant(ctx, s)
    ctx.db.dispose()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "api", "--bind", f"127.0.0.1:{port}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "bms api did not answer: " + log.read_text()
            time.sleep(0.2)
        yield Api(base, "127.0.0.1", port, admin, log, proc)
    finally:
        stop_processes([proc], grace=10)
