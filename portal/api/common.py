"""Helpers shared by the resource views."""

from __future__ import annotations

import http
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

import flask_smorest
import jsonpatch
from flask import current_app, g, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy.orm import Session
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request

from portal.api.bodies import BadInput, UnsupportedMediaType
from portal.api.fields import text
from portal.core.errors import Invalid
from portal.services.context import Context

# The largest value of an INTEGER column (PostgreSQL int4): a bound for every integer field
# stored in one, so the document states it and the database never overflows (a 500).
DB_INT_MAX = 2**31 - 1


class _StrictParser(FlaskParser):
    """webargs drops unknown query parameters by default, so a misspelt filter would
    silently list everything; reject them (422), as unknown JSON fields are."""

    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": RAISE,
        "querystring": RAISE,
    }

    def _raw_load_json(self, req: Any) -> Any:
        """The body through the app's JSON provider (portal/api/bodies.py: bounded depth,
        no NUL or surrogates), never webargs' own recursive ``json.loads``. A body in
        another media type is a 415, not "the fields are missing"."""
        if not req.get_data(cache=True):
            return webargs_core.missing
        if not is_json_request(req):
            raise UnsupportedMediaType(req.mimetype or None)
        return req.get_json()


def require_body(*media_types: str) -> None:
    """A request with a body schema must carry a body, of a media type the operation reads:
    400 without one (webargs would load an empty body as ``{}``), 415 for another type."""
    if not request.get_data(cache=True):
        wanted = " or ".join(media_types)
        raise BadInput(f"a request body ({wanted}) is required", "body", status=400)
    if not any(request.mimetype == t or request.mimetype.endswith("+json") for t in media_types):
        raise UnsupportedMediaType(request.mimetype or None, " or ".join(media_types))


def documented_errors(
    doc: dict[str, Any], doc_info: dict[str, Any], method: str, has_path_params: bool
) -> list[int]:
    """The error statuses an operation can answer, each documented with a problem body.

    Every /v1 operation authenticates (401) and may be throttled (429); role-checked ones
    answer 403; those with path parameters, arguments (a marker, a referenced id) or a body
    404 and 422; writes, and lookups by a name several resources share, 409 (state, locks,
    duplicates); those with a body 400, 408 (stalled), 413 (too large) and 415."""
    statuses = {401, 429}
    if doc_info.get("bms_role"):
        statuses.add(403)
    arguments = doc_info.get("arguments", {}).get("parameters", [])
    has_body = "requestBody" in doc or "requestBody" in doc_info.get("manual_doc", {})
    if has_path_params or arguments or has_body:
        statuses |= {404, 422}
    if has_path_params:
        statuses.add(409)  # a name shared by several resources (images): use an id
    if method not in ("get", "head"):
        statuses |= {404, 409, 422}
    if has_body:
        statuses |= {400, 408, 413, 415}
    return sorted(statuses)


def _typed(field: fields.Field, kind: type | tuple[type, ...], name: str) -> None:
    load = field._deserialize

    def typed_load(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise ValidationError(f"not a JSON {name}")
        return load(value, *args, **kwargs)

    field._deserialize = typed_load  # type: ignore[method-assign]


def strict_json(schema: Schema, seen: set[int] | None = None) -> Schema:
    """Make a body schema take JSON as typed, as the OpenAPI document says: an integer field
    refuses ``2.5``, ``"2"`` and ``true``, a boolean field ``0`` and ``"yes"`` (marshmallow
    coerces them). Only body schemas: query strings are text and are still converted."""
    seen = seen if seen is not None else set()
    if id(schema) in seen:
        return schema
    seen.add(id(schema))
    stack: list[fields.Field] = list(schema.fields.values())
    while stack:
        field = stack.pop()
        if isinstance(field, fields.Boolean):
            _typed(field, bool, "boolean")
        elif isinstance(field, fields.Integer):
            _typed(field, int, "integer")
        elif isinstance(field, fields.Nested) and isinstance(field.schema, Schema):
            strict_json(field.schema, seen)
        elif isinstance(field, fields.List):
            stack.append(field.inner)
        elif isinstance(field, fields.Dict) and field.value_field is not None:
            stack.append(field.value_field)
    return schema


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _StrictParser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(self._prepare_problem_doc)

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        """As flask-smorest's, with one schema instance for every request: given a schema
        class, webargs builds a new instance (and its nested schemas) per request, ~0.3 ms
        for ``NodeCreate``. Schemas keep no per-request state, so one instance serves all.

        A JSON body is required (``requestBody.required``): a request without one is a 400,
        one of another media type a 415, before webargs reads it; its values are taken as
        typed (``strict_json``)."""
        if isinstance(schema, type):
            schema = schema()
        if kwargs.get("location", "json") != "json":
            return super().arguments(schema, *args, **kwargs)
        inner = super().arguments(strict_json(schema), *args, **kwargs)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            parsed = inner(func)

            @wraps(parsed)
            def wrapper(*f_args: Any, **f_kwargs: Any) -> Any:
                require_body("application/json")
                return parsed(*f_args, **f_kwargs)

            return wrapper

        return decorator

    def register_views_in_doc(self, api: Any, app: Any, spec: Any, **kwargs: Any) -> None:
        # Tell _prepare_problem_doc which operations have path parameters (a 404 each).
        for endpoint, info in self._docs.items():
            rule = next(app.url_map.iter_rules(f"{self.name}.{endpoint}"))
            for key, op_info in info.items():
                if key != "parameters":
                    op_info["bms_path_params"] = bool(rule.arguments)
        super().register_views_in_doc(api, app, spec, **kwargs)

    @staticmethod
    def _prepare_problem_doc(
        doc: dict[str, Any], doc_info: dict[str, Any], *, method: str, **kwargs: Any
    ) -> dict[str, Any]:
        """Document every error response of every operation (see ``documented_errors``)."""
        role = doc_info.get("bms_role")
        if role:  # who may call it: "admin" (admins only) or "writer" (admins and members)
            doc["x-required-role"] = role
        path_params = bool(doc_info.get("bms_path_params"))
        responses = doc.setdefault("responses", {})
        for status in documented_errors(doc, doc_info, method, path_params):
            responses.setdefault(status, http.HTTPStatus(status).name)
        return doc


def ctx() -> Context:
    c: Context = current_app.extensions["bms"]
    return c


class PatchOp(Schema):
    op = fields.String(required=True, validate=validate.OneOf(["add", "replace", "remove"]))
    path = fields.String(
        required=True,
        validate=text(
            "a JSON pointer to a patchable field, e.g. /properties/cpus",
            max=1024,
            pattern=r"^/[A-Za-z0-9_:./-]+(/[^/]*)*$",
        ),
    )
    value = fields.Raw(allow_none=True)


def apply_patch(
    document: dict[str, Any], ops: list[dict[str, Any]], schema: Schema
) -> dict[str, Any]:
    """Apply a JSON Patch (RFC 6902) to ``document`` and validate the result with ``schema``.

    Returns only the top-level fields whose value changed.
    """
    allowed = set(schema.fields)
    for op in ops:
        top = op["path"].split("/")[1]
        if top not in allowed:
            raise Invalid(
                f"'{op['path']}' cannot be patched; patchable: {', '.join(sorted(allowed))}",
                field=op["path"],
            )
    try:
        patched = jsonpatch.apply_patch(document, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise Invalid(f"patch does not apply: {exc}", field="patch") from None
    # A removed top-level field becomes null; the schema says whether it may be.
    subset = {k: patched.get(k) for k in allowed if k in patched or k in document}
    try:
        loaded = schema.load(subset, partial=True)
    except ValidationError as exc:
        errors = [
            {"field": k, "message": "; ".join(map(str, v)) if isinstance(v, list) else str(v)}
            for k, v in exc.normalized_messages().items()
        ]
        raise Invalid(
            "patched node is invalid: "
            + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            errors=errors,
        ) from None
    return {k: v for k, v in loaded.items() if document.get(k) != v}


@contextmanager
def tx() -> Iterator[Session]:
    """A unit of work on the request's session: commit on success, roll back on error.

    The session stays open until the request ends, so responses can be serialized after
    the commit (lazy attributes still load).
    """
    s = g.get("db_session")
    if s is None:
        db = ctx().db
        maker = db.read_sessionmaker if request.method in ("GET", "HEAD") else db.sessionmaker
        s = g.db_session = maker()
    try:
        yield s
        s.commit()
    except BaseException:
        s.rollback()
        raise


def close_session(_exc: BaseException | None = None) -> None:
    s = g.pop("db_session", None)
    if s is not None:
        s.close()
