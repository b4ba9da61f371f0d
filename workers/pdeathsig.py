"""Dying with the parent: a child process that must not outlive the process that started it.

Linux's ``PR_SET_PDEATHSIG`` makes the kernel send a signal to this process when its
parent dies, however it dies (``kill -9`` included). It survives ``exec`` (redis-server,
gunicorn), so it can be set in ``Popen(preexec_fn=...)``. Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask for ``sig`` when the parent dies; if it already died, act now."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except OSError:
        return
    if os.getppid() != parent:  # the parent died while prctl was being set
        os.kill(os.getpid(), sig)
