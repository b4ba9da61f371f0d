"""Domain errors. The HTTP layer maps each to a status and an RFC 9457 problem body."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Invalid(DomainError):
    """A well-formed request whose content the domain rejects; names the field."""

    status = 422
    title = "Invalid request"

    def __init__(self, detail: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        if field is not None:
            self.extra["errors"] = [{"field": field, "message": detail}]


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class QuotaExceeded(DomainError):
    status = 403
    title = "Quota exceeded"


class BadGateway(DomainError):
    """A device behind the portal (a BMC) failed to answer properly."""

    status = 502
    title = "Bad gateway"


class Unavailable(DomainError):
    """Nobody could do the work in time (e.g. no worker is running)."""

    status = 504
    title = "Gateway timeout"


class Unauthenticated(DomainError):
    """No credentials, or wrong ones (e.g. a deploy agent's token)."""

    status = 401
    title = "Unauthorized"


class TooLarge(DomainError):
    """A request past one of the configured limits (body bytes, import rows)."""

    status = 413
    title = "Content too large"
