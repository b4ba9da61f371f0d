"""Property-based tests: the bad-input classes of issue 16 on every write endpoint.

The endpoints come from the OpenAPI document, so a new one is covered without touching this
file (it gets an empty base body and dummy path parameters until someone adds a better one
to ``BASES``). For each, bodies are built from a valid base with one field replaced by a bad
value (deep nesting, NUL, lone surrogates, integers past 64 bits, huge and non-finite
numbers, very long strings, wrong types), or the whole body replaced (empty, not an object,
invalid UTF-8, truncated, the wrong media type). Query parameters of every operation that
takes them and path segments get the same treatment. Whatever the input: never a 5xx, always
a problem document, and a 400/415/422 names the field in ``errors[].field``.

Runs on SQLite and PostgreSQL (the ``client`` fixture); bounded and derandomized.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import urllib.parse
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.api.problems import CONTENT_TYPE
from tests.helpers import node_body, seed_world

SETTINGS = settings(
    max_examples=int(os.environ.get("BMS_FUZZ_EXAMPLES", "500")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WRITE_METHODS = ("post", "put", "patch", "delete")
PUBKEY = (
    Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)


def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "0" + "]" * depth
    return '{"k":' * depth + "0" + "}" * depth


SPECIAL_CHARS = st.sampled_from(["\x00", "\ud800", "\udfff", "\udc00x", "\ud83d", "\x7f", "\u2028"])
BAD_STRINGS = st.one_of(
    st.tuples(st.text(max_size=8), SPECIAL_CHARS, st.text(max_size=8)).map("".join),
    st.integers(min_value=37, max_value=70_000).map(lambda n: "x" * n),
    st.sampled_from(["", " ", "../../etc/passwd", "00000000-0000-0000-0000-000000000000"]),
)
# JSON texts (not Python values: NaN and lone surrogates have to be written by hand).
BAD_VALUES = st.one_of(
    BAD_STRINGS.map(json.dumps),  # stdlib: escapes a lone surrogate as \udXXX
    st.integers(min_value=2**63 - 2, max_value=2**200).map(str),
    st.integers(min_value=-(2**200), max_value=-(2**63) + 2).map(str),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.7976931348623157e308"]),
    st.sampled_from(["4.5", "-1", "0", "true", "null", "[]", "{}", "[1, 2]", '{"a": "b"}']),
    st.tuples(st.integers(min_value=33, max_value=3000), st.sampled_from(["array", "object"])).map(
        lambda t: _nested(*t)
    ),
    # Any JSON at all, of whatever type (strings may hold surrogates and NUL).
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ).map(json.dumps),
)
WHOLE_BODIES: list[tuple[str, bytes]] = [
    ("application/json", b""),
    ("application/json", b"null"),
    ("application/json", b"[]"),
    ("application/json", b"42"),
    ("application/json", b'"a string"'),
    ("application/json", b'{"a": "\xff\xfe"}'),
    ("application/json", b'{"a": '),
    ("application/json", b"{} {}"),
    ("application/json", _nested(5000, "array").encode()),
    ("application/json", _nested(40, "object").encode()),
    ("text/plain", b"name=x"),
    ("application/x-www-form-urlencoded", b"name=x"),
]


@pytest.fixture
def world(ctx, client):
    w = seed_world(ctx)
    a = w.admin
    ids: dict[str, str] = {}
    ids["node"] = client.post("/v1/nodes", json=node_body(1), headers=a).json["uuid"]
    ids["flavor"] = client.post(
        "/v1/flavors",
        json={"name": "private", "vcpus": 1, "ram_mb": 1, "disk_gb": 1, "is_public": False},
        headers=a,
    ).json["id"]
    ids["image"] = client.post(
        "/v1/images", json={"name": "shared", "visibility": "shared"}, headers=a
    ).json["id"]
    ids["aggregate"] = client.post("/v1/aggregates", json={"name": "agg"}, headers=a).json["id"]
    users = client.get("/v1/users?limit=100", headers=a).json["users"]
    ids["user"] = next(u["id"] for u in users if u["name"] == "alice")
    return w, ids


def _path_values(path: str, w: Any, ids: dict[str, str]) -> dict[str, str]:
    by_name = {
        "aggregate_id": ids["aggregate"],
        "image_id": ids["image"],
        "project_id": w.alice_project,
        "user_id": ids["user"],
    }
    if path.startswith("/v1/flavors/"):
        by_name["ident"] = ids["flavor"]
    elif path.startswith("/v1/nodes/"):
        by_name["ident"] = ids["node"]
    return by_name


def _bases(w: Any, ids: dict[str, str]) -> dict[tuple[str, str], Any]:
    """A valid body per operation: the fuzzer breaks one field of it at a time."""
    flavor = {"name": "f", "vcpus": 1, "ram_mb": 1, "disk_gb": 1, "extra_specs": {}}
    return {
        ("post", "/v1/aggregates"): {"name": "a2", "metadata": {"rack": "r1"}, "nodes": []},
        ("patch", "/v1/aggregates/{aggregate_id}"): {"metadata": {"rack": "r2"}},
        ("post", "/v1/flavors"): flavor,
        ("patch", "/v1/flavors/{ident}"): {"description": "d", "extra_specs": {}},
        ("post", "/v1/flavors/{ident}/access"): {"project_id": w.bob_project},
        ("post", "/v1/images"): {"name": "i", "min_disk": 1},
        ("patch", "/v1/images/{image_id}"): {"name": "i2"},
        ("post", "/v1/images/{image_id}/members"): {"project_id": w.bob_project},
        ("post", "/v1/instances"): {"name": "vm", "flavor": "bm.small", "image": w.image},
        ("post", "/v1/keypairs"): {"name": "k", "public_key": PUBKEY},
        ("post", "/v1/nodes"): node_body(7),
        ("post", "/v1/nodes/import"): [node_body(8)],
        ("patch", "/v1/nodes/{ident}"): [{"op": "add", "path": "/properties/x", "value": 1}],
        ("put", "/v1/nodes/{ident}/maintenance"): {"reason": "r"},
        ("put", "/v1/nodes/{ident}/states/power"): {"target": "power on"},
        ("put", "/v1/nodes/{ident}/states/provision"): {"target": "manage"},
        ("post", "/v1/ports"): {"node": ids["node"], "address": "52:54:00:aa:bb:cc"},
        ("post", "/v1/projects"): {"name": "p"},
        ("put", "/v1/projects/{project_id}/quota"): {"instances": 5},
        ("post", "/v1/server-groups"): {"name": "g", "policy": "affinity"},
        ("post", "/v1/users"): {"name": "u", "project_id": w.alice_project},
        ("post", "/v1/users/{user_id}/tokens"): {"description": "t"},
    }


def _fresh(base: Any, n: int) -> Any:
    """``base`` with unique names (and MACs): a valid body creates a new resource each time,
    so the broken value reaches the database instead of stopping at a name conflict."""
    if isinstance(base, list):
        return [_fresh(item, n) for item in base]
    if not isinstance(base, dict):
        return base
    if "ports" in base and "driver_info" in base:
        return {**base, **node_body(n, driver=base["driver"])}
    if isinstance(base.get("name"), str):
        return {**base, "name": f"{base['name']}-{n}"}
    return base


def _operations(client: Any, admin: dict[str, str]) -> tuple[list[Any], list[Any], list[Any]]:
    """(operations with a JSON body, operations with query parameters, all operations)."""
    spec = client.get("/v1/openapi.json", headers=admin).json
    bodies, queries, every = [], [], []
    for path, ops in sorted(spec["paths"].items()):
        for method, op in sorted(ops.items()):
            if method not in (*WRITE_METHODS, "get"):
                continue
            every.append((method, path))
            content = op.get("requestBody", {}).get("content", {})
            if method in WRITE_METHODS and "application/json" in content:
                schema = content["application/json"].get("schema", {})
                bodies.append((method, path, _properties(spec, schema)))
            params = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
            if params:
                queries.append((method, path, params))
    return bodies, queries, every


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return sorted(schema.get("properties", {}))


def _url(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
    # A parameter nobody gave a value for (a new endpoint): a dummy, so the route matches.
    while "{" in path:
        start = path.index("{")
        path = path[:start] + "x" + path[path.index("}") + 1 :]
    return path


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``doc`` a value sits (keys of objects, items of lists), at any depth."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    out = []
    for key, value in items:
        out.append((*prefix, key))
        if isinstance(value, (dict, list)):
            out += _paths(value, (*prefix, key))
    return out


def _with_bad(base: Any, where: tuple[Any, ...], bad: str) -> bytes:
    """``base`` as JSON text with the value at ``where`` replaced by the JSON text ``bad``."""
    marker = "\u0001BAD\u0001"
    doc = json.loads(json.dumps(base))
    target = doc
    for part in where[:-1]:
        target = target[part]
    if isinstance(target, list) and where[-1] >= len(target):
        target.append(marker)
    else:
        target[where[-1]] = marker
    return json.dumps(doc).replace(json.dumps(marker), bad).encode("utf-8", "surrogatepass")


def check(r: Any, what: Any) -> None:
    text = r.get_data(as_text=True)
    assert r.status_code < 500, (what, r.status_code, text[:500])
    if r.status_code >= 400:
        assert r.mimetype == CONTENT_TYPE, (what, r.status_code, text[:300])
        problem = r.get_json(force=True)
        assert problem["status"] == r.status_code and problem["detail"], (what, problem)
        if r.status_code in (400, 415, 422):
            fields = [e.get("field") for e in problem.get("errors", [])]
            assert fields and all(fields), (what, problem)
            assert "unexpected error" not in problem["detail"], (what, problem)


def test_every_write_endpoint_is_enumerated_with_a_base_body(client, world) -> None:
    w, ids = world
    bodies, _, _ = _operations(client, w.admin)
    found = {(m, p) for m, p, _ in bodies}
    assert found >= set(_bases(w, ids)), set(_bases(w, ids)) - found  # the map is not stale
    assert len(found) >= 20


def test_whole_bodies_on_every_write_endpoint(client, world) -> None:
    w, ids = world
    bodies, _, _ = _operations(client, w.admin)
    for method, path, _props in bodies:
        url = _url(path, _path_values(path, w, ids))
        for ctype, body in WHOLE_BODIES:
            r = client.open(
                url, method=method.upper(), data=body, content_type=ctype, headers=w.admin
            )
            check(r, (method, path, ctype, body[:40]))


def test_one_bad_field_on_every_write_endpoint(client, world) -> None:
    w, ids = world
    bodies, _, _ = _operations(client, w.admin)
    bases = _bases(w, ids)
    serial = itertools.count(100)

    @SETTINGS
    @given(data=st.data())
    def run(data: Any) -> None:
        method, path, props = data.draw(st.sampled_from(bodies), label="operation")
        base = _fresh(bases.get((method, path), {}), next(serial))
        top: tuple[Any, ...] = (0,) if isinstance(base, list) else ()
        where = sorted({*_paths(base), *((*top, p) for p in props), (*top, "unknown")}, key=repr)
        key = data.draw(st.sampled_from(where), label="field")
        bad = data.draw(BAD_VALUES, label="value")
        url = _url(path, _path_values(path, w, ids))
        r = client.open(
            url,
            method=method.upper(),
            data=_with_bad(base, key, bad),
            content_type="application/json",
            headers=w.admin,
        )
        check(r, (method, path, key, bad[:80]))

    run()


QUERY_VALUES = st.one_of(
    BAD_STRINGS,
    st.integers(min_value=2**63 - 2, max_value=2**100).map(str),
    st.integers(min_value=-(2**100), max_value=-(2**63) + 2).map(str),
    st.sampled_from(["NaN", "1e400", "-1", "0", "true", "", "%", "2026-13-45T99:99:99"]),
)


def test_bad_query_parameters_everywhere(client, world) -> None:
    w, ids = world
    _, queries, _ = _operations(client, w.admin)

    @SETTINGS
    @given(data=st.data())
    def run(data: Any) -> None:
        method, path, params = data.draw(st.sampled_from(queries), label="operation")
        name = data.draw(st.sampled_from(params), label="parameter")
        value = data.draw(QUERY_VALUES, label="value")
        query = urllib.parse.quote(name) + "=" + urllib.parse.quote(value, errors="surrogatepass")
        url = _url(path, _path_values(path, w, ids)) + "?" + query
        body = _with_bad({}, ("unknown",), "1") if method != "get" else None
        r = client.open(
            url, method=method.upper(), data=body, content_type="text/csv", headers=w.admin
        )
        check(r, (method, path, name, value[:80]))

    run()


def test_bad_path_segments_everywhere(client, world) -> None:
    w, _ = world
    _, _, every = _operations(client, w.admin)
    templated = [(m, p) for m, p in every if "{" in p]
    segments = ["a%00b", "%ED%A0%80", "%FF", "x" * 5000, "9" * 40, "..", "%20"]
    for method, path in templated:
        for seg in segments:
            url = path
            while "{" in url:
                url = url[: url.index("{")] + seg + url[url.index("}") + 1 :]
            r = client.open(url, method=method.upper(), headers=w.admin)
            check(r, (method, path, seg[:20]))


def _integers(spec: dict[str, Any], schema: dict[str, Any], path: tuple[str, ...] = ()) -> Any:
    """(path, property schema) of every integer in a request schema, through $refs."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "array":
        yield from _integers(spec, schema.get("items", {}), (*path, "0"))
        return
    if schema.get("type") == "integer":
        yield path, schema
    for name, prop in schema.get("properties", {}).items():
        if len(path) < 4:
            yield from _integers(spec, prop, (*path, name))


def _request_integers(client: Any, admin: dict[str, str]) -> list[Any]:
    spec = client.get("/v1/openapi.json", headers=admin).json
    out = []
    for path, ops in sorted(spec["paths"].items()):
        for method, op in sorted(ops.items()):
            if not isinstance(op, dict):
                continue
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                for where, prop in _integers(spec, content["application/json"].get("schema", {})):
                    out.append((method, path, "json", where, prop))
            for p in op.get("parameters", []):
                if p.get("in") == "query" and p.get("schema", {}).get("type") == "integer":
                    out.append((method, path, "query", (p["name"],), p["schema"]))
    return out


def test_every_integer_in_a_request_has_a_declared_range(client, world) -> None:
    w, _ = world
    found = _request_integers(client, w.admin)
    assert len(found) > 20
    unbounded = [f[:4] for f in found if "minimum" not in f[4] or "maximum" not in f[4]]
    assert unbounded == []
    assert all(f[4]["minimum"] >= -(2**63) and f[4]["maximum"] < 2**63 for f in found)


def _set(doc: Any, where: tuple[str, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for part in where[:-1]:
        key: Any = int(part) if isinstance(target, list) else part
        if isinstance(target, dict) and not isinstance(target.get(key), (dict, list)):
            target[key] = {}
        target = target[key]
    if isinstance(target, list):
        return doc
    target[where[-1]] = value
    return doc


def test_integers_at_and_past_their_declared_bounds(client, world) -> None:
    """The declared range is what the database takes: at the bounds, no 5xx (PostgreSQL's
    4-byte INTEGER columns are the narrow ones); one past, a 422 naming the field."""
    w, ids = world
    bases = _bases(w, ids)
    for method, path, _where, name, prop in _request_integers(client, w.admin):
        if method not in WRITE_METHODS:
            url_base = _url(path, _path_values(path, w, ids))
            for value in (prop["minimum"], prop["maximum"]):
                r = client.open(f"{url_base}?{name[0]}={value}", method="GET", headers=w.admin)
                check(r, (path, name, value))
            r = client.get(f"{url_base}?{name[0]}={prop['maximum'] + 1}", headers=w.admin)
            check(r, (path, name, "max+1"))
            assert r.status_code == 422, (path, name)
            continue
        base = bases.get((method, path), {})
        url = _url(path, _path_values(path, w, ids))
        for i, value in enumerate(
            (prop["minimum"], prop["maximum"], prop["maximum"] + 1, prop["minimum"] - 1)
        ):
            body = _set(base, name, value)
            if method == "post" and isinstance(body, dict) and "name" in body:
                body["name"] = f"{body['name']}-{len(name)}{i}{name[-1][:20]}"
            r = client.open(url, method=method.upper(), json=body, headers=w.admin)
            check(r, (method, path, name, value))
            if i >= 2:
                assert r.status_code == 422, (method, path, name, value, r.json)
                assert ".".join(name) in {e["field"] for e in r.json["errors"]}, r.json


def _undocumented_writes(app: Any, documented: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Write routes of the URL map the OpenAPI document does not list (the deploy agent's)."""
    out = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in sorted(m.lower() for m in rule.methods or ()):
            if method in WRITE_METHODS and (method, path) not in documented:
                out.append((method, path))
    return sorted(out)


AGENT_KEYS = ["macs", "boot_token", "node_id", "status", "error", "result", "progress", "x"]


def test_bad_bodies_on_routes_outside_the_openapi_document(app, client, world) -> None:
    w, _ = world
    _, _, every = _operations(client, w.admin)
    routes = _undocumented_writes(app, set(every))
    assert ("post", "/v1/agent/lookup") in routes
    for method, path in routes:
        for ctype, body in WHOLE_BODIES:
            r = client.open(_url(path, {}), method=method.upper(), data=body, content_type=ctype)
            check(r, (method, path, ctype, body[:40]))

    @SETTINGS
    @given(data=st.data())
    def run(data: Any) -> None:
        method, path = data.draw(st.sampled_from(routes), label="route")
        keys = data.draw(st.lists(st.sampled_from(AGENT_KEYS), min_size=1, max_size=3))
        values = [data.draw(BAD_VALUES, label=k) for k in keys]
        text = (
            "{"
            + ", ".join(f"{json.dumps(k)}: {v}" for k, v in zip(keys, values, strict=True))
            + "}"
        )
        r = client.open(
            _url(path, {}),
            method=method.upper(),
            data=text.encode("utf-8", "surrogatepass"),
            content_type="application/json",
        )
        check(r, (method, path, text[:120]))

    run()
