"""Copy a dynamically linked program into an initramfs with the shared libraries it needs.

The libraries come from unpacked Debian packages (:mod:`netboot.ramdisk.debs`), never from
the host: the ELF program headers give the loader (``PT_INTERP``) and the ``DT_NEEDED``
sonames, which are looked up in the packages' library directories, symlinks followed
inside the packages (an absolute link target is relative to the package root, not to
``/``). Same packages, same files: the archive stays reproducible.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from netboot.ramdisk.cpio import Archive

# Where Debian (amd64, with or without merged /usr) puts shared libraries; Debian's
# loader searches these without an ld.so.cache.
LIB_DIRS = (
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
)
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5
_MAX_LINKS = 40


class ElfError(RuntimeError):
    pass


@dataclass(frozen=True)
class Dynamic:
    interp: str | None  # PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
    needed: tuple[str, ...]  # DT_NEEDED sonames, in order


def _segments(data: bytes) -> list[tuple[int, int, int, int]]:
    """(type, file offset, vaddr, file size) of each program header."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError("not a little-endian ELF64 file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    out = []
    for i in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        out.append((p_type, offset, vaddr, filesz))
    return out


def _file_offset(segments: list[tuple[int, int, int, int]], vaddr: int) -> int:
    for p_type, offset, start, size in segments:
        if p_type == PT_LOAD and start <= vaddr < start + size:
            return vaddr - start + offset
    raise ElfError(f"address {vaddr:#x} is in no loaded segment")


def _cstr(data: bytes, offset: int) -> str:
    return data[offset : data.index(b"\0", offset)].decode()


def dynamic(data: bytes) -> Dynamic:
    """The loader and the needed sonames of an ELF64 executable or shared library."""
    segments = _segments(data)
    interp = None
    entries: list[tuple[int, int]] = []
    for p_type, offset, _vaddr, size in segments:
        if p_type == PT_INTERP:
            interp = _cstr(data, offset)
        elif p_type == PT_DYNAMIC:
            entries = [struct.unpack_from("<qQ", data, offset + i) for i in range(0, size, 16)]
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    needed_offsets = []
    for tag, value in entries:
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed_offsets.append(value)
    if needed_offsets and strtab is None:
        raise ElfError("DT_NEEDED without DT_STRTAB")
    base = _file_offset(segments, strtab) if strtab is not None else 0
    return Dynamic(interp, tuple(_cstr(data, base + off) for off in needed_offsets))


class PackageRoots:
    """Unpacked packages seen as one filesystem (the first package holding a path wins)."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = tuple(roots)

    def _entry(self, rel: str) -> Path | None:
        for root in self.roots:
            p = root / rel
            if p.is_symlink() or p.exists():
                return p
        return None

    def resolve(self, path: str) -> Path:
        """The regular file ``path`` names, its symlinks followed inside the packages."""
        rel = posixpath.normpath(path).lstrip("/")
        for _ in range(_MAX_LINKS):
            p = self._entry(rel)
            if p is None:
                raise ElfError(f"{path}: not in {', '.join(r.name for r in self.roots)}")
            if not p.is_symlink():
                return p
            target = str(p.readlink())
            base = "" if target.startswith("/") else posixpath.dirname(rel)
            rel = posixpath.normpath(posixpath.join(base, target.lstrip("/")))
        raise ElfError(f"{path}: too many levels of symbolic links")

    def find(self, path: str) -> str:
        """``path`` as given, or under ``usr/`` (packages built for a merged /usr)."""
        rel = path.lstrip("/")
        for candidate in (rel, f"usr/{rel}"):
            if self._entry(candidate) is not None:
                return candidate
        raise ElfError(f"{path}: not in {', '.join(r.name for r in self.roots)}")

    def library(self, soname: str) -> str:
        """Where a soname lives (a path relative to the root), searching ``LIB_DIRS``."""
        for d in LIB_DIRS:
            if self._entry(f"{d}/{soname}") is not None:
                return f"{d}/{soname}"
        raise ElfError(f"shared library {soname} is in none of {[r.name for r in self.roots]}")


def add_program(archive: Archive, roots: PackageRoots, path: str) -> list[str]:
    """Add the program at ``path`` (e.g. ``sbin/sfdisk``) with its loader and the closure
    of its shared libraries; the archive paths added, program first.

    Libraries go where their package has them, as regular files named by their soname;
    the loader goes to its ``PT_INTERP`` path (a symlink when that is a library already
    added, as ``/lib64/ld-linux-x86-64.so.2`` is on Debian).
    """
    program = roots.find(path)
    placed: dict[Path, str] = {}  # real file → its path in the archive
    interps: set[str] = set()
    todo = [program]
    while todo:
        rel = todo.pop(0)
        src = roots.resolve(rel)
        if src in placed:
            continue
        placed[src] = rel
        data = src.read_bytes()
        archive.file(rel, data, 0o755)
        info = dynamic(data)
        if info.interp:
            interps.add(info.interp)
        todo += [roots.library(n) for n in info.needed]
    for interp in sorted(interps):
        src = roots.resolve(roots.find(interp))
        if placed.get(src) == interp.lstrip("/"):
            continue
        if src in placed:
            archive.symlink(interp, "/" + placed[src])
        else:
            archive.file(interp, src.read_bytes(), 0o755)
            placed[src] = interp.lstrip("/")
    return list(placed.values())
