"""Random tokens for netboot and the agent, stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token() -> str:
    """32 random bytes, URL-safe (43 characters): fit for a URL path and a header."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """What is stored: sha256 hex. Tokens are random, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str | None, stored: str | None) -> bool:
    return bool(token) and bool(stored) and hmac.compare_digest(digest(token or ""), stored or "")
