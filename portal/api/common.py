"""Helpers shared by the resource views."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jsonpatch
from flask import current_app, g
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy.orm import Session

from portal.core.errors import Invalid
from portal.services.context import Context


def ctx() -> Context:
    c: Context = current_app.extensions["bms"]
    return c


class PatchOp(Schema):
    op = fields.String(required=True, validate=validate.OneOf(["add", "replace", "remove"]))
    path = fields.String(required=True, validate=validate.Regexp(r"^/[A-Za-z0-9_:./-]+(/[^/]*)*$"))
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
    subset = {k: patched[k] for k in allowed if k in patched}
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
        s = g.db_session = ctx().db.sessionmaker()
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
