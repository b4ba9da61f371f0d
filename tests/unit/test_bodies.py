"""The JSON body loader (portal/api/bodies.py): bounded, iterative, naming the place."""

from __future__ import annotations

import time

import orjson
import pytest

from portal.api.bodies import HARD_MAX_DEPTH, BadInput, load, text_problem


def fails(data: str | bytes, max_depth: int = 32) -> BadInput:
    with pytest.raises(BadInput) as info:
        load(data, max_depth)
    return info.value


def field(err: BadInput) -> str:
    return str(err.extra["errors"][0]["field"])


@pytest.mark.parametrize("depth", [33, 1_000, 1_025, 100_000, 1_000_000])
def test_any_depth_is_refused_without_recursing(depth: int) -> None:
    for body in ("[" * depth + "]" * depth, "[" * depth, '{"a":' * depth + "1" + "}" * depth):
        err = fails(body)
        assert err.status == 422 and "32" in err.detail
        assert field(err).count(".") == 31  # the path to the 33rd level


def test_the_limit_is_exact_and_capped() -> None:
    assert load("[" * 32 + "]" * 32) == load("[" * 32 + "]" * 32)
    fails("[" * 33 + "]" * 33)
    assert load("[" * 3 + "]" * 3, max_depth=3) == [[[]]]
    fails("[" * 4 + "]" * 4, max_depth=3)
    # A configured limit past what the fallback parser can take is capped.
    deep = "[" * (HARD_MAX_DEPTH + 1) + "]" * (HARD_MAX_DEPTH + 1)
    assert f"{HARD_MAX_DEPTH} levels" in fails(deep, max_depth=10_000).detail


def test_strings_name_their_path() -> None:
    assert field(fails('{"a": [1, {"b": "x\\ud800"}]}')) == "a.1.b"
    assert field(fails('{"a": {"\\udc00k": 1}}')) == "a.\\udc00k"
    assert field(fails('{"a": "\\u0000"}')) == "a"
    assert field(fails('[{"k\\u0000": 1}]')) == "0.k\\u0000"
    assert text_problem("ok") is None and text_problem("\x00") and text_problem("\ud800")


def test_numbers_json_does_not_have() -> None:
    for body in ('{"n": NaN}', '{"n": Infinity}', '{"n": -Infinity}', '{"n": 1e400}'):
        err = fails(body)
        assert field(err) == "n" and err.status == 422, body


def test_syntax_and_encoding_errors_are_400_with_the_place() -> None:
    err = fails(b'{"a": {"b": }}')
    assert err.status == 400 and field(err) == "a.b"
    err = fails(b'{"a": ["ok", "\xff"]}')
    assert err.status == 400 and field(err) == "a.1"
    assert field(fails(b"")) == "body"
    assert field(fails(b"{} []")) == "body"


def test_a_large_ordinary_body_costs_little() -> None:
    """A 4 MB node import: the checks add a walk over its containers only."""
    row = {
        "name": "node-1",
        "driver": "ipmi",
        "driver_info": {"ipmi_address": "10.0.0.1", "ipmi_username": "admin"},
        "properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100},
        "ports": [{"address": "52:54:00:12:00:01"}],
    }
    body = orjson.dumps({"nodes": [row] * 20_500})
    assert len(body) > 4_000_000
    start = time.perf_counter()
    plain = orjson.loads(body)
    parse = time.perf_counter() - start
    start = time.perf_counter()
    assert load(body) == plain
    checked = time.perf_counter() - start
    # ~2.5x orjson alone on this VM (0.17 s vs 0.07 s); generous, as the machine is shared.
    assert checked < max(10 * parse, 2.0), (parse, checked)
