"""RFC 9457 problem details for every error response."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, json
from marshmallow import INCLUDE, Schema, fields
from werkzeug.exceptions import HTTPException

from portal.core.errors import DomainError

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/problem+json"


class ProblemError(Schema):
    field = fields.String(metadata={"description": "the field, dotted for nested ones"})
    location = fields.String(metadata={"description": "json, query, path or header"})
    message = fields.String()


class Problem(Schema):
    """An RFC 9457 problem body; some problems add members (e.g. ``state``, ``allowed``)."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.List(fields.Nested(ProblemError))


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(json.dumps(body), status=status, mimetype=CONTENT_TYPE)


def _flatten(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """webargs' nested {"json": {"field": ["msg"]}} as a flat list naming each field."""
    out: list[dict[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        location, _, field = prefix.partition(".")
        if field == "_schema" or field.endswith("._schema"):  # the object itself, not a field
            field = field.removesuffix("_schema").rstrip(".") or "body"
        for m in messages:
            out.append({"field": field or location, "location": location, "message": m})
    elif isinstance(messages, list):
        for i, m in enumerate(messages):
            out += _flatten(m, f"{prefix}.{i}")
    else:
        out.append({"field": prefix, "message": str(messages)})
    return out


def from_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if messages:
        errors = _flatten(messages)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(status, error.name, detail, errors=errors)
    detail = data.get("message") or error.description or error.name
    resp = problem(status, error.name, str(detail))
    for name, value in error.get_headers():  # e.g. a 405's Allow (the methods of the path)
        if name.lower() != "content-type":
            resp.headers[name] = value
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="bms", X-Auth-Token'
    return resp


def from_domain_error(error: DomainError) -> Response:
    return problem(error.status, error.title, error.detail, **error.extra)


def from_unexpected(error: Exception) -> Response:
    log.exception("unhandled error")
    return problem(500, "Internal server error", "an unexpected error occurred; see the server log")
