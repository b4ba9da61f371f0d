"""Retry BMC operations that failed transiently, with exponential backoff.

Only :attr:`ErrorKind.TRANSIENT` errors are retried: an auth failure will fail the same way
again (and may lock the BMC account), and an unreachable BMC already cost a whole timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from workers.drivers.base import DriverError, ErrorKind

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    attempts: int = 3
    first_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 5.0

    def delays(self) -> list[float]:
        """The sleeps between attempts: 0.5, 1.0, … capped at ``max_delay``."""
        return [
            min(self.first_delay * self.factor**i, self.max_delay)
            for i in range(max(0, self.attempts - 1))
        ]


DEFAULT = Backoff()


def retrying(
    fn: Callable[[], T],
    policy: Backoff = DEFAULT,
    sleep: Callable[[float], None] = time.sleep,
    label: str = "BMC call",
) -> T:
    """``fn()``, retried on transient errors per ``policy``; other errors raise at once."""
    for delay in [*policy.delays(), None]:
        try:
            return fn()
        except DriverError as exc:
            if exc.kind != ErrorKind.TRANSIENT or delay is None:
                raise
            log.info("%s failed transiently (%s); retrying in %.1f s", label, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises
