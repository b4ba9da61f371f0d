"""A reproducible newc cpio archive (the initramfs format), written in Python.

Written here rather than with GNU ``cpio`` so the archive needs no files on disk with the
right owners: every entry is root:root, has one fixed mtime, inode numbers follow the
sorted path order, and device nodes (``/dev/console``) need no ``mknod`` (no root).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    mode: int  # file type bits included
    data: bytes = b""  # file contents, or the symlink target
    rdev: tuple[int, int] = (0, 0)


@dataclass
class Archive:
    entries: dict[str, Entry] = field(default_factory=dict)

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = Entry(stat.S_IFDIR | 0o755)

    def _add(self, path: str, entry: Entry) -> None:
        path = path.strip("/")
        if not path or ".." in path.split("/"):
            raise ValueError(f"bad archive path {path!r}")
        self._parents(path)
        self.entries[path] = entry

    def dir(self, path: str, perm: int = 0o755) -> None:
        self._add(path, Entry(stat.S_IFDIR | perm))

    def file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        self._add(path, Entry(stat.S_IFREG | perm, data))

    def symlink(self, path: str, target: str) -> None:
        self._add(path, Entry(stat.S_IFLNK | 0o777, target.encode()))

    def chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._add(path, Entry(stat.S_IFCHR | perm, rdev=(major, minor)))

    def serialize(self, mtime: int) -> bytes:
        out = bytearray()
        for ino, path in enumerate(sorted(self.entries), start=1):
            e = self.entries[path]
            _header(out, path, ino, e.mode, 2 if stat.S_ISDIR(e.mode) else 1, mtime, e.data, e.rdev)
        _header(out, "TRAILER!!!", 0, 0, 1, 0, b"", (0, 0))
        return bytes(out)


def _pad(out: bytearray) -> None:
    out += b"\0" * (-len(out) % 4)


def _header(
    out: bytearray,
    name: str,
    ino: int,
    mode: int,
    nlink: int,
    mtime: int,
    data: bytes,
    rdev: tuple[int, int],
) -> None:
    raw = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, rdev[0], rdev[1], len(raw), 0)
    out += b"070701" + "".join(f"{v:08x}" for v in fields).encode()
    out += raw
    _pad(out)
    out += data
    _pad(out)
