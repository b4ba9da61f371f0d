"""The worker's raw copies of qcow2 images, made by the real qemu-img."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest

from portal.core.imagestore import LocalImageStore
from workers import imageconvert
from workers.drivers.base import DriverError


def qcow2_of(raw: bytes, tmp: Path) -> Path:
    src, out = tmp / "src.raw", tmp / "out.qcow2"
    src.write_bytes(raw)
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(src), str(out)], check=True
    )
    return out


@pytest.fixture
def raw_bytes() -> bytes:
    # 2 MiB: data, a hole of zeros (qcow2 stores no cluster for it), data again.
    return os.urandom(512 * 1024) + b"\0" * (1024 * 1024) + os.urandom(512 * 1024)


@pytest.fixture
def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


def put(store: LocalImageStore, image_id: str, path: Path) -> None:
    with path.open("rb") as fh:
        store.put(image_id, fh)


def test_qcow2_becomes_the_same_raw_bytes(store, raw_bytes, tmp_path) -> None:
    qcow2 = qcow2_of(raw_bytes, tmp_path)
    assert qcow2.stat().st_size < len(raw_bytes)  # the hole is not stored
    put(store, "img1", qcow2)
    raw = imageconvert.ensure_raw(store, "img1", "qcow2", timeout=60)
    assert raw.path.read_bytes() == raw_bytes
    assert raw.size == len(raw_bytes)
    assert raw.sha256 == hashlib.sha256(raw_bytes).hexdigest()
    assert raw.path == store.variant_path("img1", "raw")
    for f in store.root.iterdir():  # the copy, its sidecar, its lock: the owner's only
        assert f.stat().st_mode & 0o077 == 0, f
    # deleting the image deletes its raw copy and the sidecar files too
    store.delete("img1")
    assert list(store.root.iterdir()) == []


def test_a_second_deploy_reuses_the_copy(store, raw_bytes, tmp_path, monkeypatch) -> None:
    put(store, "img1", qcow2_of(raw_bytes, tmp_path))
    first = imageconvert.ensure_raw(store, "img1", "qcow2", timeout=60)

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(imageconvert, "_convert", no_second_conversion)
    assert imageconvert.ensure_raw(store, "img1", "qcow2", timeout=60) == first


def test_concurrent_deploys_convert_once(store, raw_bytes, tmp_path, monkeypatch) -> None:
    put(store, "img1", qcow2_of(raw_bytes, tmp_path))
    calls: list[int] = []
    real = imageconvert._convert

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(imageconvert, "_convert", counting)
    results: list[imageconvert.RawImage] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(imageconvert.ensure_raw(store, "img1", "qcow2", 60))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1


def test_a_torn_copy_is_made_again(store, raw_bytes, tmp_path) -> None:
    put(store, "img1", qcow2_of(raw_bytes, tmp_path))
    raw = imageconvert.ensure_raw(store, "img1", "qcow2", timeout=60)
    with raw.path.open("r+b") as fh:
        fh.truncate(1000)  # e.g. a disk filled up under an earlier copy
    again = imageconvert.ensure_raw(store, "img1", "qcow2", timeout=60)
    assert again.path.read_bytes() == raw_bytes


def test_qemu_img_info_is_vetted_again(store, tmp_path) -> None:
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    backed = tmp_path / "backed.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(backed)],
        check=True,
    )
    put(store, "evil", backed)  # as if the upload check had been bypassed
    with pytest.raises(DriverError, match="backing file"):
        imageconvert.ensure_raw(store, "evil", "qcow2", timeout=60)
    assert not store.variant_path("evil", "raw").exists()


def test_bytes_that_are_not_the_format_are_refused(store, tmp_path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(4096))
    put(store, "junk", junk)
    with pytest.raises(DriverError, match="qemu-img info failed"):
        imageconvert.ensure_raw(store, "junk", "qcow2", timeout=60)


def test_vet_refuses_what_info_reports() -> None:
    ok = {"format": "qcow2", "virtual-size": 1024}
    assert imageconvert.vet(ok, "qcow2") == 1024
    bad = [
        ({**ok, "format": "raw"}, "reads it as 'raw'"),
        ({**ok, "full-backing-filename": "/etc/shadow"}, "backing file"),
        ({**ok, "format-specific": {"data": {"data-file": "/dev/sda"}}}, "external data"),
        ({**ok, "encrypted": True}, "encrypted"),
        ({**ok, "virtual-size": 0}, "virtual size"),
        ({"format": "qcow2"}, "virtual size"),
    ]
    for data, why in bad:
        with pytest.raises(DriverError, match=why):
            imageconvert.vet(data, "qcow2")


def test_missing_qemu_img_is_named(store, raw_bytes, tmp_path, monkeypatch) -> None:
    put(store, "img1", qcow2_of(raw_bytes, tmp_path))
    monkeypatch.setattr(imageconvert, "QEMU_IMG", "qemu-img-not-installed")
    with pytest.raises(DriverError, match="apt-get install qemu-utils"):
        imageconvert.ensure_raw(store, "img1", "qcow2", timeout=60)


def test_missing_image_bytes(store) -> None:
    with pytest.raises(DriverError, match="missing from the image store"):
        imageconvert.ensure_raw(store, "nope", "qcow2", timeout=60)
