"""Throttling of repeated authentication failures, per client, shared by every API process.

Every 401 answer to a request that carried a credential (a user token, an agent token, a
boot token) counts one failure for the client's address in Redis: ``INCR`` of a key created
with the window as its TTL (``SET NX EX`` then ``INCR``, in one MULTI), so all gunicorn
workers and API hosts share one count and the window starts at the first failure. Once a
client reached the limit, every request it sends is answered 429 with ``Retry-After``
*before* its credential is looked at, until the key expires. If Redis cannot be reached
the throttle fails open (requests are served) and says so in the log, at most once a
minute.

The client's address is the connection's peer address. ``X-Forwarded-For`` is believed
only when that peer is one of ``BMS_TRUSTED_PROXIES``: then the client is the rightmost
address of the header that is not itself a trusted proxy (addresses further left were
written by the client and can be forged).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(proxies: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _is_in(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_address(
    remote_addr: str | None, forwarded_for: str | None, proxies: Sequence[str]
) -> str:
    """Who the client is, for counting (see the module's docstring)."""
    peer = remote_addr or "unknown"
    networks = _networks(proxies)
    if not networks or not forwarded_for or not _is_in(peer, networks):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_in(hop, networks):
            return hop
    return hops[0] if hops else peer


@dataclass
class FailureThrottle:
    """``redis``: gives the connection (may raise if Redis is unreachable)."""

    redis: Callable[[], Any]
    namespace: str
    limit: int
    window: int
    trusted_proxies: tuple[str, ...] = ()
    _quiet_until: float = field(default=0.0)
    _skip_until: float = field(default=0.0)

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.window > 0

    def _key(self, client: str) -> str:
        return f"{self.namespace}:authfail:{client}"

    def _skipping(self) -> bool:
        """After Redis failed, it is not asked again for a few seconds: a Redis that hangs
        must not slow every request down."""
        return time.monotonic() < self._skip_until

    def _redis_down(self, exc: Exception) -> None:
        now = time.monotonic()
        self._skip_until = now + 5
        if now >= self._quiet_until:
            log.warning("auth failure throttle off: Redis unreachable (%s); failing open", exc)
            self._quiet_until = now + 60

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None if it is not blocked."""
        if not self.enabled or self._skipping():
            return None
        try:
            conn = self.redis()
            pipe = conn.pipeline(transaction=False)
            pipe.get(self._key(client))
            pipe.ttl(self._key(client))
            count, ttl = pipe.execute()
        except Exception as exc:  # Redis down or misconfigured: fail open
            self._redis_down(exc)
            return None
        if count is None or int(count) < self.limit:
            return None
        return max(int(ttl), 1)

    def failed(self, client: str) -> None:
        """One more authentication failure of ``client``."""
        if not self.enabled or self._skipping():
            return
        key = self._key(client)
        try:
            pipe = self.redis().pipeline(transaction=True)
            pipe.set(key, 0, ex=self.window, nx=True)
            pipe.incr(key)
            _, count = pipe.execute()
        except Exception as exc:
            self._redis_down(exc)
            return
        if count == self.limit:
            log.warning(
                "client %s reached %d authentication failures in %d s: throttled",
                client,
                self.limit,
                self.window,
            )
