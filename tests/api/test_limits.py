"""Request limits (issue 16, item 6): body bytes per kind of request and rows per import.

Every refusal is a 413 problem body naming the limit and the setting that changes it, and
comes before the body is read (from Content-Length) or as soon as a chunked body passes
the limit; an import past its row limit is refused before one row is validated.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from portal.app import create_app
from portal.core.models import Image, Node
from tests.helpers import node_body, seed_world


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


def limited_client(ctx: Any, **limits: int) -> Any:
    ctx.settings = dataclasses.replace(ctx.settings, **limits)
    app = create_app(context=ctx)
    app.testing = True
    return app.test_client()


def assert_413(r: Any, limit: int, setting: str) -> None:
    assert r.status_code == 413, (r.status_code, r.get_data()[:300])
    assert r.mimetype == "application/problem+json"
    body = r.json
    assert body["status"] == 413 and body["limit"] == limit and body["setting"] == setting
    assert str(limit) in body["detail"] and setting in body["detail"]


# A body without Content-Length, as gunicorn hands on a chunked one.
CHUNKED = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True}


class Unread(io.RawIOBase):
    """A request body that fails the test if anybody reads it."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def readinto(self, b: Any) -> int:
        raise AssertionError("the body was read")


def test_json_body_over_the_limit_is_refused_from_its_content_length(ctx, world) -> None:
    client = limited_client(ctx, max_body_bytes=4096)
    r = client.post(
        "/v1/nodes",
        input_stream=Unread(),
        headers={**world.admin, "Content-Type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": "4097"},
    )
    assert_413(r, 4096, "BMS_MAX_BODY_BYTES")
    # Any JSON endpoint, any method, and before authentication: the body is never read.
    r = client.patch(
        f"/v1/images/{world.image}",
        input_stream=Unread(),
        headers={"Content-Type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": str(10**9)},
    )
    assert_413(r, 4096, "BMS_MAX_BODY_BYTES")
    # At the limit, a body is read as before.
    body = json.dumps(node_body(1)).encode()
    body += b" " * (4096 - len(body))
    r = client.post(
        "/v1/nodes", data=body, headers={**world.admin, "Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.json


def test_chunked_json_body_is_cut_at_the_limit(ctx, world) -> None:
    client = limited_client(ctx, max_body_bytes=4096)
    stream = io.BytesIO(b'{"name": "' + b"x" * 100_000 + b'"}')
    r = client.post(
        "/v1/nodes",
        input_stream=stream,
        headers={**world.admin, "Content-Type": "application/json"},
        environ_overrides=CHUNKED,
    )
    assert_413(r, 4096, "BMS_MAX_BODY_BYTES")
    assert stream.tell() <= 4096 + 64 * 1024, "read far past the limit"


def test_default_json_limit_is_one_mebibyte(ctx, client, world) -> None:
    r = client.post(
        "/v1/flavors",
        data=b'{"name": "' + b"x" * (1024 * 1024) + b'"}',
        headers={**world.admin, "Content-Type": "application/json"},
    )
    assert_413(r, 1024 * 1024, "BMS_MAX_BODY_BYTES")


def test_image_data_has_its_own_limit_and_the_image_stays_queued(ctx, world) -> None:
    client = limited_client(ctx, max_body_bytes=4096, max_image_bytes=64 * 1024)
    r = client.post("/v1/images", json={"name": "big", "disk_format": "raw"}, headers=world.alice)
    assert r.status_code == 201, r.json
    image_id = r.json["id"]
    put = {**world.alice, "Content-Type": "application/octet-stream"}
    # Over the JSON limit but within the image limit: streamed and stored.
    r = client.put(f"/v1/images/{image_id}/file", data=b"a" * 60_000, headers=put)
    assert r.status_code == 200, r.json
    assert r.json["size"] == 60_000
    r = client.post(
        "/v1/images", json={"name": "bigger", "disk_format": "raw"}, headers=world.alice
    )
    image_id = r.json["id"]
    r = client.put(
        f"/v1/images/{image_id}/file",
        input_stream=Unread(),
        headers={**put},
        environ_overrides={"CONTENT_LENGTH": str(64 * 1024 + 1)},
    )
    assert_413(r, 64 * 1024, "BMS_MAX_IMAGE_BYTES")
    # Chunked (no length): cut while it streams; the image goes back to queued, nothing kept.
    r = client.put(
        f"/v1/images/{image_id}/file",
        input_stream=io.BytesIO(b"b" * 200_000),
        headers=put,
        environ_overrides=CHUNKED,
    )
    assert_413(r, 64 * 1024, "BMS_MAX_IMAGE_BYTES")
    with ctx.session() as s:
        assert s.get_one(Image, image_id).status == "queued"
    assert ctx.store.path(image_id) is None  # no partial file left in the store


def test_import_bytes_have_their_own_limit(ctx, world) -> None:
    client = limited_client(ctx, max_body_bytes=1024, max_import_bytes=8192)
    rows = json.dumps([node_body(i) for i in range(5)]).encode()  # over 1 KiB, under 8 KiB
    assert 1024 < len(rows) < 8192
    r = client.post(
        "/v1/nodes/import", data=rows, headers={**world.admin, "Content-Type": "application/json"}
    )
    assert r.status_code == 200 and r.json["created"] == 5, r.json
    r = client.post(
        "/v1/nodes/import",
        input_stream=Unread(),
        headers={**world.admin, "Content-Type": "text/csv"},
        environ_overrides={"CONTENT_LENGTH": "8193"},
    )
    assert_413(r, 8192, "BMS_MAX_IMPORT_BYTES")


def bad_rows_json(count: int) -> bytes:
    return json.dumps(
        [{"name": f"n{i}", "driver": "nope", "properties": {"cpus": "x"}} for i in range(count)]
    ).encode()


def bad_rows_csv(count: int) -> bytes:
    lines = ["name,driver,properties.cpus"] + [f"n{i},nope,x" for i in range(count)]
    return "\n".join(lines).encode()


@pytest.mark.parametrize(
    ("content_type", "make"), [("application/json", bad_rows_json), ("text/csv", bad_rows_csv)]
)
def test_import_of_100000_rows_is_refused_fast(ctx, client, world, content_type, make) -> None:
    """The issue's 4 MB import of 100,000 bad rows took 15 s of a worker: now a 413 in
    well under a second, nothing validated and nothing created."""
    body = make(100_000)
    assert len(body) < 8 * 1024 * 1024  # within the default byte limit: the row limit acts
    # CPU time of this process (the app runs in it), not wall time: other work on a shared
    # 2-core machine stretched the wall time past 1 s once (1.16 s) with no change here.
    started = time.process_time()
    r = client.post(
        "/v1/nodes/import", data=body, headers={**world.admin, "Content-Type": content_type}
    )
    elapsed = time.process_time() - started
    assert_413(r, 10_000, "BMS_MAX_IMPORT_ROWS")
    # 0.15-0.35 s here on a quiet machine (mostly parsing the 4-7 MB of JSON once).
    assert elapsed < 1.0, f"refusing took {elapsed:.2f} s of CPU"
    with ctx.session() as s:
        assert s.scalar(select(func.count()).select_from(Node)) == 0


@pytest.mark.parametrize(
    ("content_type", "make"), [("application/json", bad_rows_json), ("text/csv", bad_rows_csv)]
)
def test_import_at_the_row_limit_is_processed(ctx, world, content_type, make) -> None:
    client = limited_client(ctx, max_import_rows=3)
    h = {**world.admin, "Content-Type": content_type}
    r = client.post("/v1/nodes/import", data=make(3), headers=h)
    assert r.status_code == 200 and r.json["failed"] == 3, r.json
    r = client.post("/v1/nodes/import", data=make(4), headers=h)
    assert_413(r, 3, "BMS_MAX_IMPORT_ROWS")


def test_cli_import_keeps_the_row_limit(ctx, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from portal.cli import main

    monkeypatch.setenv("BMS_MAX_IMPORT_ROWS", "2")
    path = tmp_path / "nodes.json"
    path.write_bytes(bad_rows_json(3))
    result = CliRunner().invoke(main, ["node", "import", str(path)])
    assert result.exit_code == 1 and "BMS_MAX_IMPORT_ROWS" in result.output, result.output
