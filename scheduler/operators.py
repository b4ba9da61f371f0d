"""Flavor capability requirements with Nova's operator syntax (interim version)."""

from __future__ import annotations

import math
from typing import Any

NUMERIC = {
    "=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}
STRING = {
    "s==": lambda a, b: a == b,
    "s!=": lambda a, b: a != b,
    "s<": lambda a, b: a < b,
    "s<=": lambda a, b: a <= b,
    "s>": lambda a, b: a > b,
    "s>=": lambda a, b: a >= b,
}


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def validate(req: str) -> str | None:
    words = req.split()
    if not words:
        return None
    op = words[0]
    if op in NUMERIC and (len(words) != 2 or _float(words[1]) is None):
        return f"'{req}': '{op}' needs one number"
    if op in STRING and len(words) < 2:
        return f"'{req}': '{op}' needs a value"
    if op in ("<in>", "<all-in>") and len(words) < 2:
        return f"'{req}': '{op}' needs a value"
    return None


def matches(req: str, value: object) -> bool:
    if value is None:
        return False
    words = req.split()
    if not words:
        return str(value).strip() == ""
    op = words[0]
    if op in NUMERIC:
        have, want = _float(value), _float(words[1]) if len(words) == 2 else None
        return have is not None and want is not None and bool(NUMERIC[op](have, want))
    if op in STRING:
        return len(words) >= 2 and bool(STRING[op](str(value), " ".join(words[1:])))
    if op == "<in>":
        return len(words) >= 2 and " ".join(words[1:]) in str(value)
    if op == "<all-in>":
        items = value if isinstance(value, list) else str(value).split(",")
        present = {str(i).strip() for i in items}
        return len(words) >= 2 and all(w in present for w in words[1:])
    if op == "<or>":
        options = [o.strip() for o in req.split("<or>") if o.strip()]
        return str(value).strip() in options
    return str(value).strip() == req.strip()
