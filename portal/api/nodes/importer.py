"""Bulk enrollment from JSON or CSV: a result per row, and nothing half-created on a bad row.

Each row (node plus its ports) is created in its own savepoint: a bad row is rolled back
whole and reported, good rows are kept. With ``atomic=True`` one bad row rejects the file.

CSV columns: ``name, driver, resource_class, owner``, dotted columns for dictionaries
(``driver_info.ipmi_address``, ``properties.cpus``), ``capabilities`` as ``k:v;k:v``,
``traits`` as ``A;B``, ``ports`` as ``mac[@physnet[@switch/port]];mac`` (the switch by uuid,
name or chassis MAC, then the switch port's name: ``52:54:00:00:00:01@physnet1@tor1/Ethernet1/7``;
``mac@@tor1/xe-0/0/1`` for no physical network). See docs/switches.md.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import current_app, has_app_context
from marshmallow import ValidationError
from sqlalchemy.orm import Session

from portal.api.bodies import DEFAULT_MAX_DEPTH, NUL, BadInput, UnsupportedMediaType
from portal.api.bodies import load as load_json
from portal.api.nodes.schemas import NodeCreate
from portal.api.problems import _flatten
from portal.core.errors import DomainError, Invalid, TooLarge
from portal.services import nodes as node_service
from portal.services.context import Context
from tenants.principal import Principal


def parse(content: bytes, content_type: str, max_rows: int) -> list[dict[str, Any]]:
    """The rows of an import, refused whole (before any is validated) past ``max_rows``."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"not UTF-8 text: {exc}", "body", status=400) from None
    if "csv" in content_type:
        if (nul := text.find("\x00")) >= 0:  # PostgreSQL stores no NUL, in text or jsonb
            raise BadInput(f"the CSV {NUL}", f"line {text.count(chr(10), 0, nul) + 1}")
        # newline="": the csv module reads line ends itself (a bare CR, CRs in quotes).
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        raw: list[dict[str, str | None]] = []
        start = 1  # the line the record being read starts on
        try:
            _ = reader.fieldnames  # the header line
            while len(raw) <= max_rows:  # stops reading one past the limit
                start = reader.line_num + 1
                if (record := next(reader, None)) is None:
                    break
                raw.append(record)
        except csv.Error as exc:
            raise BadInput(f"not valid CSV: {exc}", f"line {start}") from None
        _check_rows(len(raw), max_rows)
        rows = [_csv_row(r, line) for line, r in enumerate(raw, start=2)]
        if not rows:
            raise Invalid(
                "no rows: expected a CSV header line, then one line per node", field="body"
            )
        return rows
    mime = content_type.partition(";")[0].strip().lower()
    if mime != "application/json" and not mime.endswith("+json"):
        raise UnsupportedMediaType(mime, "application/json or text/csv")
    depth = getattr(current_app.json, "max_depth", None) if has_app_context() else None
    # Bounded depth, no NUL, no surrogates; too many rows refused before that walk.
    doc = load_json(
        text, depth or DEFAULT_MAX_DEPTH, precheck=lambda d: _check_rows(len(_rows(d)), max_rows)
    )
    found = _rows(doc)
    if not all(isinstance(r, dict) for r in found):
        raise Invalid('expected a list of node objects, or {"nodes": [...]}', field="body")
    if not found:
        raise Invalid("no rows: the list of nodes is empty", field="body")
    return found


# The request body as the OpenAPI document shows it: rows are objects read as NodeCreate,
# but a row that is not a valid NodeCreate is reported in its result (200), not refused.
ROW = {"type": "object", "description": "a node, as for POST /v1/nodes (NodeCreate)"}
REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": ROW,
                    },
                    {
                        "type": "object",
                        "required": ["nodes"],
                        "properties": {
                            "nodes": {
                                "type": "array",
                                "minItems": 1,
                                "items": ROW,
                            }
                        },
                    },
                ]
            }
        },
        "text/csv": {
            "schema": {
                "type": "string",
                "description": "a header line (name, driver, driver_info.ipmi_address, ...), "
                "then one line per node",
                "pattern": "^[^\\r\\n]+\\r?\\n[^\\r\\n]*[^\\s,]",
            }
        },
    },
}


def _rows(doc: Any) -> list[Any]:
    found = doc.get("nodes") if isinstance(doc, dict) else doc
    if not isinstance(found, list):
        raise Invalid('expected a list of node objects, or {"nodes": [...]}', field="body")
    return found


def _check_rows(count: int, max_rows: int) -> None:
    if count > max_rows:
        raise TooLarge(
            f"an import may have at most {max_rows} rows (BMS_MAX_IMPORT_ROWS); split the file",
            limit=max_rows,
            setting="BMS_MAX_IMPORT_ROWS",
        )


def _csv_row(raw: dict[str, str | None], line: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in raw.items():
        if key is None or value is None or value.strip() == "":
            continue
        value = value.strip()
        key = key.strip()
        if key == "capabilities":
            row[key] = dict(kv.split(":", 1) for kv in value.split(";") if ":" in kv)
        elif key == "traits":
            row[key] = [t.strip() for t in value.split(";") if t.strip()]
        elif key == "ports":
            row[key] = [_csv_port(p) for p in value.split(";") if p.strip()]
        elif "." in key:
            top, sub = key.split(".", 1)
            holder = row.setdefault(top, {})
            if not isinstance(holder, dict):  # both "x" and "x.y" columns
                raise BadInput(
                    f"column '{key}' and column '{top}' both set '{top}'", f"line {line}"
                )
            holder[sub] = value
        else:
            row[key] = value
    return row


def _csv_port(text: str) -> dict[str, Any]:
    """``mac[@physnet[@switch/port]]``: the switch (uuid, name or chassis MAC) up to the
    first ``/``, the switch port's name after it (it may hold more ``/``: Ethernet1/7)."""
    address, _, rest = text.strip().partition("@")
    port: dict[str, Any] = {"address": address.strip()}
    physnet, _, link = rest.partition("@")
    if physnet.strip():
        port["physical_network"] = physnet.strip()
    if link.strip():
        switch, _, name = link.strip().partition("/")
        port["local_link_connection"] = {"switch_id": switch.strip(), "port_id": name.strip()}
    return port


def import_rows(
    ctx: Context, s: Session, rows: list[dict[str, Any]], actor: Principal, atomic: bool = False
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    schema = NodeCreate()
    for number, raw in enumerate(rows, start=1):
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
        try:
            data = schema.load(raw)
            with s.begin_nested():
                node = node_service.create_node(ctx, s, data, actor)
            results.append(
                {
                    "row": number,
                    "status": "created",
                    "uuid": node.id,
                    "name": node.name,
                    "errors": [],
                }
            )
        except ValidationError as exc:
            results.append(
                {
                    "row": number,
                    "status": "error",
                    "uuid": None,
                    "name": name,
                    "errors": _flatten({"row": exc.normalized_messages()}),
                }
            )
        except DomainError as exc:
            errors = exc.extra.get("errors") or [
                {"field": exc.extra.get("field", ""), "message": exc.detail}
            ]
            results.append(
                {"row": number, "status": "error", "uuid": None, "name": name, "errors": errors}
            )
    failed = sum(r["status"] == "error" for r in results)
    if atomic and failed:
        s.rollback()
        for r in results:
            if r["status"] == "created":
                r.update(status="rolled back", uuid=None)
    return {
        "created": len(results) - failed if not (atomic and failed) else 0,
        "failed": failed,
        "results": results,
    }
