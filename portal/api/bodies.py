"""Request bodies and request strings, checked in one place before any schema sees them.

Every JSON body is parsed here (the app's JSON provider and the webargs parser both call
:func:`load`), so no endpoint can forget a check:

- nesting deeper than ``BMS_MAX_JSON_DEPTH`` (default 32) is a 422 naming the path where the
  limit was passed; nothing recurses on the way (orjson stops at 1,024 levels by itself, the
  fallback parser only runs on bodies already known to be shallow);
- a string (or key) holding NUL or a lone UTF-16 surrogate is a 422 naming it: PostgreSQL
  stores neither, and a surrogate cannot be encoded back to UTF-8 in a response;
- NaN, Infinity and numbers too large for a double are refused;
- malformed JSON and invalid UTF-8 are a 400 naming the place where parsing stopped.

Query parameters, path segments and the token headers are checked for the same characters
by :func:`check_request_strings`, a before-request hook.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson
from flask import request

from portal.core.errors import DomainError, NotFound

DEFAULT_MAX_DEPTH = 32
# The fallback parser (stdlib json) recurses once per level: keep well below Python's limit.
HARD_MAX_DEPTH = 512
NUL = "contains a NUL character (\\u0000), which is not allowed"
SURROGATE = "contains a lone UTF-16 surrogate, which is not a character"


class BadInput(DomainError):
    """A request whose body or parameters cannot be taken in at all; names the field."""

    def __init__(
        self, detail: str, field: str, *, status: int = 422, location: str = "json"
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = "Bad request" if status == 400 else "Invalid request"
        where = field or "body"
        self.detail = f"{where}: {detail}"
        self.extra["errors"] = [{"field": where, "location": location, "message": detail}]


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported Media Type"

    def __init__(self, got: str | None, expected: str = "application/json") -> None:
        message = f"send the body as {expected}" + (f", not {got}" if got else "")
        super().__init__(
            message,
            expected=expected,
            errors=[{"field": "Content-Type", "location": "headers", "message": message}],
        )


def text_problem(s: str) -> str | None:
    """Why ``s`` cannot be taken in as text, or None."""
    if "\x00" in s:
        return NUL
    try:
        s.encode()
    except UnicodeEncodeError:
        return SURROGATE
    return None


def printable(part: Any, limit: int = 100) -> str:
    """A path component as it can be shown: control characters and surrogates escaped."""
    s = str(part)[:limit]
    if s.isprintable() and text_problem(s) is None:
        return s
    return "".join(c if c.isprintable() and c != "\x00" else f"\\u{ord(c):04x}" for c in s)


def _path(parts: list[Any] | tuple[Any, ...]) -> str:
    return ".".join(printable(p) for p in parts)


def load(
    data: str | bytes,
    max_depth: int = DEFAULT_MAX_DEPTH,
    precheck: Callable[[Any], None] | None = None,
) -> Any:
    """Parse a JSON body; :class:`BadInput` (400/422, naming the field) on anything unsafe.

    ``precheck`` sees the parsed document before the (costlier) walk for depth and NUL: a
    caller refuses a body that is too big by its shape there, for the price of parsing it.
    """
    max_depth = min(max_depth, HARD_MAX_DEPTH)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        _explain(data, max_depth, str(exc))
    if precheck is not None:
        precheck(doc)
    # Cheap tests first: a body with fewer brackets than the limit cannot be too deep, and
    # NUL can only arrive escaped (a raw control character is not valid JSON).
    if data.count(b"[") + data.count(b"{") > max_depth or b"\\u0000" in data:
        _walk(doc, max_depth, scalars=False)
    return doc


def _explain(data: bytes, max_depth: int, orjson_error: str) -> Any:
    """orjson refused ``data``: find out why, and where, without ever recursing deeply."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start].decode(errors="replace")
        raise BadInput(
            f"the body is not valid UTF-8 (byte {exc.start})",
            _path(_locate(prefix)),
            status=400,
        ) from None
    _locate(text, max_depth)  # raises if too deep
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            _path(_locate(text[: exc.pos])),
            status=400,
        ) from None
    except RecursionError:  # pragma: no cover - _locate bounds the depth
        raise BadInput(f"nested deeper than {max_depth} levels", "body") from None
    _walk(doc, max_depth, scalars=True)
    raise BadInput(f"not valid JSON: {orjson_error}", "body", status=400)


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{},:]')


def _locate(text: str, max_depth: int | None = None) -> list[Any]:
    """The JSON path at the end of ``text`` (a prefix of a body), read token by token.

    With ``max_depth``, raise :class:`BadInput` as soon as the nesting passes it.
    """
    stack: list[list[Any]] = []  # ["o", key, expecting_key] or ["a", index]
    for m in _TOKEN.finditer(text):
        t = m.group()
        if t in "{[":
            if max_depth is not None and len(stack) >= max_depth:
                parts = [f[1] for f in stack if f[1] is not None]
                raise BadInput(_too_deep(max_depth), _path(parts))
            stack.append(["o", None, True] if t == "{" else ["a", 0])
        elif t in "]}":
            if stack:
                stack.pop()
        elif not stack:
            continue
        elif t == ",":
            top = stack[-1]
            if top[0] == "a":
                top[1] += 1
            else:
                top[2] = True
        elif t == ":":
            if stack[-1][0] == "o":
                stack[-1][2] = False
        elif stack[-1][0] == "o" and stack[-1][2]:  # an object's key
            try:
                stack[-1][1] = json.loads(t)
            except ValueError:
                stack[-1][1] = t[1:]
    return [f[1] for f in stack if f[1] is not None]


def _too_deep(max_depth: int) -> str:
    return f"nested deeper than {max_depth} levels (the limit for request bodies)"


def _walk(doc: Any, max_depth: int, *, scalars: bool) -> None:
    """Raise :class:`BadInput` for the first container past ``max_depth`` or bad string;
    with ``scalars``, also for non-finite numbers (only the fallback parser makes them)."""
    if scalars and isinstance(doc, str) and (reason := text_problem(doc)) is not None:
        raise BadInput(f"the value {reason}", "body")
    stack: list[tuple[Any, int, tuple[Any, ...]]] = []
    if isinstance(doc, (dict, list)):
        stack.append((doc, 1, ()))
    while stack:
        obj, depth, path = stack.pop()
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        if depth > max_depth:
            raise BadInput(_too_deep(max_depth), _path(path))
        for key, value in items:
            if isinstance(key, str) and (reason := text_problem(key)) is not None:
                raise BadInput(f"the key {reason}", _path((*path, key)))
            if isinstance(value, (dict, list)):
                stack.append((value, depth + 1, (*path, key)))
            elif isinstance(value, str):
                if (reason := text_problem(value)) is not None:
                    raise BadInput(f"the value {reason}", _path((*path, key)))
            elif scalars and isinstance(value, float) and not math.isfinite(value):
                raise BadInput("NaN and Infinity are not numbers JSON allows", _path((*path, key)))


def check_request_strings() -> None:
    """before-request hook: query parameters, path segments and token headers must be
    text PostgreSQL can take (no NUL, no lone surrogate)."""
    for key, value in request.args.items(multi=True):
        for s in (key, value):
            if (reason := text_problem(s)) is not None:
                raise BadInput(f"the parameter {reason}", printable(key), location="query")
    for segment in (request.view_args or {}).values():
        if isinstance(segment, str) and text_problem(segment) is not None:
            raise NotFound(f"'{printable(segment)}' not found")
    for name in ("X-Auth-Token", "Authorization"):
        header = request.headers.get(name)
        if header and (reason := text_problem(header)) is not None:
            raise BadInput(f"the header {reason}", name, location="headers")
