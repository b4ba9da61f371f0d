"""Raw copies of images for deploy interfaces that write raw bytes only (the agent).

A qcow2 image is converted once, in a worker, with ``qemu-img``, into a raw copy beside it
in the image store, and reused by every later deploy. The copy is made under a file lock
(two deploys of one image convert once), into a temporary file that is renamed when
complete, and its sha256 and size are kept in a sidecar file: the agent verifies the bytes
it writes against that sha256, so what lands on a disk is what the conversion produced.

Before converting, ``qemu-img info`` runs with a memory and CPU limit and its answer is
vetted again (the upload already checked the header): no backing file, no external data
file, not encrypted, the declared format. ``-f`` is always given, so qemu-img never probes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal.core.imagestore import ImageStore
from workers.drivers.base import DriverError, ErrorKind

QEMU_IMG = "qemu-img"
RAW = "raw"
INFO_MEMORY = 1024**3  # address space for `qemu-img info` (as Nova and Glance limit it)
INFO_CPU_SECONDS = 30
CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class RawImage:
    path: Path
    size: int
    sha256: str


def ensure_raw(store: ImageStore, image_id: str, source_format: str, timeout: float) -> RawImage:
    """The raw copy of an image, converting it first if there is none yet."""
    done = _read_done(store, image_id)
    if done is not None:
        return done
    source = store.path(image_id)
    if source is None:
        raise DriverError(f"image {image_id}: its bytes are missing from the image store")
    lock_path = store.variant_path(image_id, f"{RAW}.lock")
    with open(os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second deploy of this image waits here
        done = _read_done(store, image_id)
        if done is not None:
            return done
        return _convert(store, image_id, source, source_format, timeout)


def _read_done(store: ImageStore, image_id: str) -> RawImage | None:
    path = store.variant_path(image_id, RAW)
    try:
        meta = json.loads(store.variant_path(image_id, f"{RAW}.json").read_text())
        if path.stat().st_size == meta["size"]:
            return RawImage(path, int(meta["size"]), str(meta["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _convert(
    store: ImageStore, image_id: str, source: Path, source_format: str, timeout: float
) -> RawImage:
    virtual_size = vet(info(source, source_format), source_format)
    final = store.variant_path(image_id, RAW)
    part = store.variant_path(image_id, f"{RAW}.{os.getpid()}.part")
    try:
        _run(
            [QEMU_IMG, "convert", "-q", "-f", source_format, "-O", RAW, str(source), str(part)],
            timeout=timeout,
        )
        os.chmod(part, 0o600)  # a tenant's image: as private as the store's own files
        raw = _hash(part)
        if raw.size != virtual_size:
            raise DriverError(
                f"qemu-img wrote {raw.size} bytes; the image's virtual size is {virtual_size}"
            )
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    meta = store.variant_path(image_id, f"{RAW}.json")
    tmp = meta.with_name(meta.name + ".part")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(json.dumps({"size": raw.size, "sha256": raw.sha256, "from": source_format}))
    os.replace(tmp, meta)
    return RawImage(final, raw.size, raw.sha256)


def info(path: Path, source_format: str) -> dict[str, Any]:
    """``qemu-img info`` as JSON, under a memory and CPU limit (a crafted header must not
    make it eat the worker's host)."""
    out = _run(
        [QEMU_IMG, "info", "--output=json", "-f", source_format, str(path)],
        timeout=INFO_CPU_SECONDS * 2,
        limit=True,
    )
    try:
        data = json.loads(out)
    except ValueError:
        raise DriverError(f"qemu-img info gave no JSON: {out[:200]!r}") from None
    if not isinstance(data, dict):
        raise DriverError("qemu-img info gave no JSON object")
    return data


def vet(data: dict[str, Any], source_format: str) -> int:
    """The image's virtual size, if ``qemu-img info`` shows nothing unsafe."""

    def refuse(why: str) -> DriverError:
        return DriverError(f"image refused: {why}", ErrorKind.INVALID)

    if data.get("format") != source_format:
        raise refuse(f"qemu-img reads it as {data.get('format')!r}, not {source_format}")
    if data.get("backing-filename") or data.get("full-backing-filename"):
        raise refuse("it names a backing file")
    if ((data.get("format-specific") or {}).get("data") or {}).get("data-file"):
        raise refuse("it uses an external data file")
    if data.get("encrypted"):
        raise refuse("it is encrypted")
    size = data.get("virtual-size")
    if not isinstance(size, int) or size <= 0:
        raise refuse(f"its virtual size {size!r} is not a positive number")
    return size


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (INFO_MEMORY, INFO_MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (INFO_CPU_SECONDS, INFO_CPU_SECONDS))


def _run(args: list[str], timeout: float, limit: bool = False) -> str:
    if shutil.which(args[0]) is None:
        raise DriverError(
            f"{args[0]} is not installed on this worker (Debian/Ubuntu: apt-get install "
            "qemu-utils): it converts qcow2 images to raw for the deploy agent",
            ErrorKind.UNSUPPORTED,
        )
    try:
        p = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=_limits if limit else None,
        )
    except subprocess.TimeoutExpired:
        raise DriverError(f"{args[0]} {args[1]} took longer than {timeout:.0f} s") from None
    if p.returncode != 0:
        raise DriverError(f"{args[0]} {args[1]} failed: {p.stderr.strip()[-300:]}")
    return p.stdout


def _hash(path: Path) -> RawImage:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return RawImage(path, size, digest.hexdigest())
