"""Authentication of every /v1 request and the role checks views use."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, g, request
from werkzeug.exceptions import Forbidden, Unauthorized

from portal.api.problems import problem
from portal.services.throttle import FailureThrottle, client_address
from tenants.principal import Principal

F = TypeVar("F", bound=Callable[..., Any])
# The API's description and its docs UI: public, so a throttled client may still read them.
PUBLIC_PATHS = ("/v1/openapi.json", "/v1/docs")
CACHE_TTL = 5.0  # seconds a validated token is trusted without a database round trip


def token_from_request() -> str | None:
    token = request.headers.get("X-Auth-Token")
    if token:
        return token.strip()
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def authenticate() -> None:
    """before_request hook: sets ``g.principal`` or answers 401."""
    token = token_from_request()
    if not token:
        raise Unauthorized(
            "no token: send 'X-Auth-Token: <token>' or 'Authorization: Bearer <token>'"
        )
    cache: dict[str, tuple[float, Principal]] = current_app.extensions["bms_token_cache"]
    hit = cache.get(token)
    now = time.monotonic()
    if hit and now - hit[0] < CACHE_TTL:
        g.principal = hit[1]
        return
    ctx = current_app.extensions["bms"]
    with ctx.db.read_session() as s:
        principal = ctx.auth.authenticate(s, token)
    if principal is None:
        cache.pop(token, None)
        raise Unauthorized("invalid, expired or revoked token")
    if len(cache) > 10_000:
        cache.clear()
    cache[token] = (now, principal)
    g.principal = principal


def _recently_valid(token: str | None) -> bool:
    if not token:
        return False
    cache: dict[str, tuple[float, Principal]] = current_app.extensions["bms_token_cache"]
    hit = cache.get(token)
    return hit is not None and time.monotonic() - hit[0] < CACHE_TTL


def _client() -> str:
    throttle: FailureThrottle = current_app.extensions["bms_auth_throttle"]
    return client_address(
        request.remote_addr, request.headers.get("X-Forwarded-For"), throttle.trusted_proxies
    )


def refuse_throttled_clients() -> Response | None:
    """App-wide before_request: a client with too many recent authentication failures gets
    429 before any credential of its request is looked at."""
    throttle: FailureThrottle = current_app.extensions["bms_auth_throttle"]
    if not throttle.enabled or not request.path.startswith("/v1/"):
        return None
    if request.path.startswith(PUBLIC_PATHS):  # take no credential: nothing to guess
        return None
    if _recently_valid(token_from_request()):
        # A token this process validated moments ago is no guess: skip the Redis round
        # trip (most requests), and a legitimate client is not locked out with a guesser.
        return None
    wait = throttle.retry_after(_client())
    if wait is None:
        return None
    resp = problem(
        429,
        "Too Many Requests",
        f"too many failed authentication attempts from this address; retry in {wait} s",
    )
    resp.headers["Retry-After"] = str(wait)
    return resp


def count_auth_failures(response: Response) -> Response:
    """App-wide after_request: a 401 to a request that carried a credential (user token,
    agent token, boot token) is one authentication failure of its client."""
    if response.status_code == 401 and request.path.startswith("/v1/"):
        carried = (
            token_from_request()
            or request.headers.get("X-Agent-Token")
            or request.path.startswith("/v1/agent/")
        )
        if carried:
            current_app.extensions["bms_auth_throttle"].failed(_client())
    return response


def principal() -> Principal:
    p: Principal = g.principal
    return p


def admin_only(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not principal().is_admin:
            raise Forbidden("this action requires the 'admin' role")
        return fn(*args, **kwargs)

    _mark_role(wrapper, "admin")
    return wrapper  # type: ignore[return-value]


def _mark_role(wrapper: Any, role: str) -> None:
    """Record the role check in the function's flask-smorest doc: it documents a 403."""
    wrapper._apidoc = {**getattr(wrapper, "_apidoc", {}), "bms_role": role}


def writer(fn: F) -> F:
    """Members and admins may change things; readers may not."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not principal().can_write:
            raise Forbidden("the 'reader' role may not change anything")
        return fn(*args, **kwargs)

    _mark_role(wrapper, "writer")
    return wrapper  # type: ignore[return-value]
