"""Kernel modules for an initramfs: pick by name, close over dependencies, order for insmod.

Debian's kernel package ships no ``modules.dep`` (``depmod`` runs at install time), so the
dependencies are read from each module's ``.modinfo`` ELF section (``depends=`` and
``softdep=pre:``), which is what depmod itself reads. Debian 12 modules are uncompressed
(``CONFIG_MODULE_COMPRESS_NONE``); ``.ko.xz``/``.ko.gz``/``.ko.zst`` are decompressed at
build time so busybox ``insmod`` never has to.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")

NIC_MODULES = (
    "virtio_net", "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice", "tg3",
    "bnxt_en", "r8169", "vmxnet3", "mlx5_core",
)  # fmt: skip
DISK_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_scsi", "ahci", "ata_piix", "sd_mod", "nvme",
    "megaraid_sas", "mpt3sas", "smartpqi", "hpsa",
)  # fmt: skip


class ModuleError(RuntimeError):
    pass


@dataclass(frozen=True)
class Module:
    name: str  # normalised: '-' → '_'
    relpath: str  # under lib/modules/<version>/, always ending in .ko
    data: bytes
    depends: tuple[str, ...]
    softdeps: tuple[str, ...] = ()  # "softdep=pre:" names; may be aliases: used if found


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _decompress(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".zst"):
        if not shutil.which("zstd"):
            raise ModuleError(f"{path.name}: zstd-compressed module and no zstd tool")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return raw


def modinfo(data: bytes) -> dict[str, list[str]]:
    """The ``key=value`` strings of an ELF64 module's ``.modinfo`` section."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ModuleError("not an ELF64 object")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = sections[shstrndx][4]
    out: dict[str, list[str]] = {}
    for name_off, _type, _flags, _addr, offset, size in sections:
        end = data.index(b"\0", strtab + name_off)
        if data[strtab + name_off : end] != b".modinfo":
            continue
        for item in data[offset : offset + size].split(b"\0"):
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            if sep:
                out.setdefault(key, []).append(value)
    return out


def _dependencies(info: dict[str, list[str]]) -> tuple[str, ...]:
    return tuple(_norm(d) for v in info.get("depends", []) for d in v.split(",") if d)


def _softdeps(info: dict[str, list[str]]) -> tuple[str, ...]:
    deps: list[str] = []
    for soft in info.get("softdep", []):
        # "pre: a b post: c": only "pre" modules are needed before this one loads.
        words = soft.split()
        if "pre:" in words:
            i = words.index("pre:") + 1
            while i < len(words) and not words[i].endswith(":"):
                deps.append(words[i])
                i += 1
    return tuple(_norm(d) for d in deps)


class ModuleTree:
    """The ``lib/modules/<version>`` tree of an unpacked kernel package."""

    def __init__(self, moddir: Path) -> None:
        self.moddir = moddir
        self.version = moddir.name
        self._paths: dict[str, Path] = {}
        for p in sorted((moddir / "kernel").rglob("*.ko*")):
            for suffix in _SUFFIXES:
                if p.name.endswith(suffix):
                    self._paths.setdefault(_norm(p.name[: -len(suffix)]), p)
        builtin = moddir / "modules.builtin"
        self.builtin = {
            _norm(Path(line.strip()).name.removesuffix(".ko"))
            for line in (builtin.read_text().splitlines() if builtin.exists() else [])
        }
        self._cache: dict[str, Module] = {}

    @classmethod
    def find(cls, root: Path) -> ModuleTree:
        dirs = sorted(p for p in (root / "lib" / "modules").iterdir() if (p / "kernel").is_dir())
        if len(dirs) != 1:
            raise ModuleError(f"expected one kernel under {root}/lib/modules, found {dirs}")
        return cls(dirs[0])

    def module(self, name: str) -> Module:
        name = _norm(name)
        if name not in self._cache:
            path = self._paths.get(name)
            if path is None:
                raise ModuleError(f"module {name} not in {self.moddir}")
            data = _decompress(path)
            rel = path.relative_to(self.moddir).as_posix()
            rel = rel[: rel.index(".ko")] + ".ko"
            info = modinfo(data)
            self._cache[name] = Module(name, rel, data, _dependencies(info), _softdeps(info))
        return self._cache[name]

    def closure(self, names: list[str] | tuple[str, ...]) -> list[Module]:
        """``names`` and everything they depend on, dependencies first (insmod order).

        Built-in names are skipped; a requested name that is neither a module nor
        built in is an error (a typo should not silently shrink the ramdisk).
        """
        order: list[Module] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            name = _norm(name)
            if name in seen or name in self.builtin:
                return
            if name in chain:
                raise ModuleError(f"dependency cycle: {' -> '.join((*chain, name))}")
            mod = self.module(name)
            for dep in mod.depends:
                visit(dep, (*chain, name))
            for dep in mod.softdeps:
                if dep in self._paths and dep not in (*chain, name):
                    visit(dep, (*chain, name))
            seen.add(name)
            order.append(mod)

        for n in names:
            visit(n, ())
        return order


def modules_dep(mods: list[Module]) -> str:
    """A ``modules.dep`` for the chosen modules (what busybox ``modprobe`` reads)."""
    by_name = {m.name: m for m in mods}

    def all_deps(m: Module) -> list[str]:
        out: list[str] = []
        for d in m.depends:
            if d in by_name:
                for x in [*all_deps(by_name[d]), by_name[d].relpath]:
                    if x not in out:
                        out.append(x)
        return out

    lines = []
    for m in sorted(mods, key=lambda m: m.relpath):
        deps = list(reversed(all_deps(m)))
        lines.append(f"{m.relpath}:{''.join(' ' + d for d in deps)}\n")
    return "".join(lines)
