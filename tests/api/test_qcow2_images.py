"""qcow2 images: checked at upload, converted to raw once by the worker, served raw to the
deploy agent. Real qemu-img, real jobs, a ``fake-agent`` node played through the API."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_agent_protocol import enroll_available, node_state
from tests.helpers import seed_world

RAW = os.urandom(256 * 1024) + b"\0" * (3 * 1024 * 1024) + b"tail" * 1024


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def qcow2(tmp_path: Path) -> bytes:
    src, out = tmp_path / "disk.raw", tmp_path / "disk.qcow2"
    src.write_bytes(RAW)
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(src), str(out))
    return out.read_bytes()


def create(client: Any, headers: dict[str, str], **body: Any) -> str:
    r = client.post(
        "/v1/images", json={"name": "img", "visibility": "public", **body}, headers=headers
    )
    assert r.status_code == 201, r.json
    return str(r.json["id"])


def upload(client: Any, headers: dict[str, str], image_id: str, data: bytes) -> Any:
    return client.put(
        f"/v1/images/{image_id}/file",
        data=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


def test_qcow2_upload_keeps_the_bytes_and_reports_the_virtual_size(client, world, qcow2):
    image_id = create(client, world.admin, disk_format="qcow2")
    r = upload(client, world.admin, image_id, qcow2)
    assert r.status_code == 200, r.json
    assert r.json["status"] == "active" and r.json["disk_format"] == "qcow2"
    assert r.json["size"] == len(qcow2) < len(RAW)
    assert r.json["virtual_size"] == len(RAW)
    assert r.json["sha256"] == hashlib.sha256(qcow2).hexdigest()
    # download gives back what was uploaded (Glance keeps the original)
    assert client.get(f"/v1/images/{image_id}/file", headers=world.admin).data == qcow2
    raw_id = create(client, world.admin)
    assert upload(client, world.admin, raw_id, RAW).json["virtual_size"] == len(RAW)


def test_a_format_mismatch_is_a_400_and_the_image_can_be_uploaded_again(client, world, qcow2):
    image_id = create(client, world.admin)  # raw
    r = upload(client, world.admin, image_id, qcow2)
    assert r.status_code == 422, r.json
    assert r.json["errors"][0]["field"] == "disk_format" and r.json["declared"] == "raw"
    assert "is a qcow2 image, but disk_format is raw" in r.json["detail"]
    shown = client.get(f"/v1/images/{image_id}", headers=world.admin).json
    assert shown["status"] == "queued"
    assert upload(client, world.admin, image_id, RAW).status_code == 200

    junk = create(client, world.admin, disk_format="qcow2")
    r = upload(client, world.admin, junk, RAW)
    assert r.status_code == 422 and "not a qcow2 image" in r.json["detail"]


def test_a_qcow2_with_a_backing_file_is_refused(client, world, tmp_path):
    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    qemu_img("create", "-f", "qcow2", str(base), "1M")
    qemu_img("create", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", str(top))
    image_id = create(client, world.admin, disk_format="qcow2")
    r = upload(client, world.admin, image_id, top.read_bytes())
    assert r.status_code == 422 and "backing file" in r.json["detail"]


def test_an_image_bigger_than_the_flavor_disk_is_refused_at_create(client, world, tmp_path):
    big = tmp_path / "big.qcow2"
    qemu_img("create", "-f", "qcow2", str(big), "60G")  # the seeded flavor has 50 GB
    image_id = create(client, world.admin, disk_format="qcow2")
    assert upload(client, world.admin, image_id, big.read_bytes()).status_code == 200
    r = client.post(
        "/v1/instances",
        json={"name": "x", "flavor": world.flavor, "image": image_id},
        headers=world.alice,
    )
    assert r.status_code == 422, r.json
    assert "60 GB disk" in r.json["detail"] and "has 50 GB" in r.json["detail"]


def test_the_agent_writes_the_raw_copy_of_a_qcow2_image(client, world, jobs, ctx, qcow2):
    image_id = create(client, world.admin, disk_format="qcow2")
    assert upload(client, world.admin, image_id, qcow2).status_code == 200
    node_id, agent = enroll_available(client, world, jobs, ctx)
    r = client.post(
        "/v1/instances",
        json={"name": "q", "flavor": world.flavor, "image": image_id},
        headers=world.alice,
    )
    assert r.status_code == 202, r.json
    jobs()
    assert node_state(ctx, node_id) == "wait call-back"
    assert agent.lookup().status_code == 200
    cmd = agent.next_command()
    assert cmd["name"] == "write_image"
    # the agent verifies the raw bytes it writes, not the qcow2 file's checksum
    assert cmd["args"]["sha256"] == hashlib.sha256(RAW).hexdigest()
    assert cmd["args"]["size"] == len(RAW)
    url = cmd["args"]["url"].replace(ctx.settings.public_url, "")
    got = client.get(url, headers=agent.headers())
    assert got.status_code == 200 and got.data == RAW
    part = client.get(url, headers={**agent.headers(), "Range": "bytes=262144-262147"})
    assert part.status_code == 206 and part.data == b"\0" * 4
    # the raw copy sits beside the image in the store, and goes with the image
    assert ctx.store.variant_path(image_id, "raw").stat().st_size == len(RAW)
    ctx.store.delete(image_id)
    assert not ctx.store.variant_path(image_id, "raw").exists()
