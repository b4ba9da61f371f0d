"""Field types shared by the API schemas: every integer has a declared range.

The range is a marshmallow ``Range`` validator, so it is enforced with a message stating the
limits and flask-smorest writes it into the OpenAPI document as ``minimum``/``maximum``.
An unbounded ``fields.Integer`` would take 2**70 and hand it to the database (a 500).
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1  # a 4-byte INTEGER column (PostgreSQL refuses more, SQLite does not)
# RAM in MB (64 TiB): stored in 4-byte columns, and summed there for quota usage.
MAX_RAM_MB = 2**26


class Int64(fields.Integer):
    """An integer that fits a signed 64-bit column, or the narrower range given."""

    def __init__(self, *, min: int = INT64_MIN, max: int = INT64_MAX, **kwargs: Any) -> None:
        extra = kwargs.pop("validate", None) or []
        extra = [extra] if callable(extra) else list(extra)
        super().__init__(validate=[validate.Range(min=min, max=max), *extra], **kwargs)


class NonNegative(Int64):
    """0 or more (a size, a count, a minimum), at most ``max``."""

    def __init__(self, *, min: int = 0, max: int = INT64_MAX, **kwargs: Any) -> None:
        super().__init__(min=min, max=max, **kwargs)


def text(what: str, *, max: int, min: int = 1, pattern: str | None = None) -> list[Any]:
    """Validators for a bounded string whose messages state the limits: a ``Length``
    (OpenAPI ``minLength``/``maxLength``) and, given ``pattern``, a ``Regexp`` (``pattern``)
    described by ``what`` (e.g. "letters, digits and '-'")."""
    limits = f"{min} to {max} characters" if min else f"at most {max} characters"
    out: list[Any] = [validate.Length(min=min, max=max, error=f"{what}: {limits}")]
    if pattern is not None:
        out.append(validate.Regexp(pattern, error=f"{what} ({limits})"))
    return out
