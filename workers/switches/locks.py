"""A per-switch lock across processes, so two workers never interleave commands on one
switch (``flock`` on a file per switch; the kernel drops it if the holder dies)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from workers.switches.base import ErrorKind, SwitchConn, SwitchError


def lock_path(conn: SwitchConn) -> Path:
    base = Path(conn.settings.get("lock_dir") or tempfile.gettempdir())
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", conn.switch_id)
    return base / f"bms-switch-{safe}.lock"


@contextlib.contextmanager
def switch_lock(conn: SwitchConn, timeout: float | None = None) -> Iterator[None]:
    """Hold this switch's lock; kind ``transient`` if another holder keeps it past ``timeout``
    (default: the switch's timeout)."""
    wait = conn.timeout if timeout is None else timeout
    path = lock_path(conn)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SwitchError(
                        f"switch {conn.name} is busy (another worker holds its lock for "
                        f"more than {wait:.0f}s)",
                        ErrorKind.TRANSIENT,
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing releases the lock
