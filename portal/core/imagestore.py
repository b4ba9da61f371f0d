"""Image storage behind a small interface; the local-directory store streams in chunks."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024


class ChecksumMismatch(Exception):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch: expected {expected}, got {actual}")
        self.expected, self.actual = expected, actual


@dataclass(frozen=True)
class Stored:
    size: int
    sha256: str


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class ImageStore(Protocol):
    def put(
        self, image_id: str, stream: Readable, expected_sha256: str | None = None
    ) -> Stored: ...
    def path(self, image_id: str) -> Path | None: ...
    def open(self, image_id: str) -> Iterator[bytes]: ...
    def delete(self, image_id: str) -> None: ...
    def discard_partial(self, image_id: str) -> None: ...
    def variant_path(self, image_id: str, variant: str) -> Path:
        """Where a copy derived from the image (e.g. its ``raw`` conversion) lives."""
        ...


class LocalImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _final(self, image_id: str) -> Path:
        return self.root / image_id

    def put(self, image_id: str, stream: Readable, expected_sha256: str | None = None) -> Stored:
        """Write to a temporary file while hashing; move into place only if the checksum holds."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{image_id}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if expected_sha256 and expected_sha256.lower() != actual:
                raise ChecksumMismatch(expected_sha256.lower(), actual)
            os.replace(tmp, self._final(image_id))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Stored(size=size, sha256=actual)

    def path(self, image_id: str) -> Path | None:
        p = self._final(image_id)
        return p if p.exists() else None

    def open(self, image_id: str) -> Iterator[bytes]:
        with open(self._final(image_id), "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def delete(self, image_id: str) -> None:
        self._final(image_id).unlink(missing_ok=True)
        for derived in self.root.glob(f"{image_id}.*"):
            derived.unlink(missing_ok=True)

    def discard_partial(self, image_id: str) -> None:
        """Remove what an upload that died midway left (its ``.part`` file)."""
        for part in self.root.glob(f".{image_id}.*.part"):
            part.unlink(missing_ok=True)

    def variant_path(self, image_id: str, variant: str) -> Path:
        return self.root / f"{image_id}.{variant}"
