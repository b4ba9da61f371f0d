"""Build the deploy ramdisk: ``deploy.kernel`` + ``deploy.initramfs`` from Debian packages.

The kernel is Debian's (``linux-image-amd64``'s versioned dependency), busybox is
``busybox-static``; both are fetched with ``apt-get download`` into ``cache_dir`` and
unpacked there (nothing is installed on the host). The initramfs is a newc cpio written
in Python (:mod:`netboot.ramdisk.cpio`) and gzipped without name or timestamp, so the
same packages always give the same bytes (mtime: ``SOURCE_DATE_EPOCH``, default 0).

Besides busybox, the agent needs util-linux ``sfdisk`` (GPT disks: see agent.sh), a
dynamically linked program: it is copied with its loader and shared libraries, all taken
from the Debian packages below (:mod:`netboot.ramdisk.elf`).
"""

from __future__ import annotations

import gzip
import os
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from netboot.ramdisk import debs
from netboot.ramdisk.cpio import Archive
from netboot.ramdisk.elf import PackageRoots, add_program
from netboot.ramdisk.modules import DISK_MODULES, NIC_MODULES, ModuleTree, modules_dep

BUSYBOX_PACKAGE = "busybox-static"
# sfdisk and every package holding a library it loads (its DT_NEEDED closure): a missing
# one fails the build with the soname. Not the packages' whole Depends (libmount1,
# libncursesw6 are not loaded by sfdisk).
SFDISK = "sbin/sfdisk"
SFDISK_PACKAGES = (
    "fdisk", "libfdisk1", "libsmartcols1", "libblkid1", "libuuid1", "libreadline8",
    "libtinfo6", "libc6",
)  # fmt: skip


@dataclass(frozen=True)
class RamdiskFiles:
    kernel: Path
    initramfs: Path


@dataclass(frozen=True)
class Sources:
    """The unpacked packages an initramfs is made from."""

    kernel_root: Path
    kernel_version: str
    busybox: Path

    @property
    def vmlinuz(self) -> Path:
        return self.kernel_root / "boot" / f"vmlinuz-{self.kernel_version}"


def resource(name: str) -> bytes:
    """A file shipped next to this module (scripts that go into the initramfs)."""
    return resources.files("netboot.ramdisk").joinpath(name).read_bytes()


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def fetch_sources(cache_dir: Path) -> Sources:
    kernel = debs.fetch(debs.kernel_package(), cache_dir)
    busybox = debs.fetch(BUSYBOX_PACKAGE, cache_dir)
    tree = ModuleTree.find(kernel.root)
    return Sources(kernel.root, tree.version, busybox.root / "bin" / "busybox")


def _applets(busybox: Path) -> list[str]:
    """``busybox --list-full``: applet paths such as ``bin/sh``, ``usr/sbin/ubirename``."""
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    return sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})


def base_archive(src: Sources, modules: list[str] | tuple[str, ...]) -> Archive:
    """Busybox with its applet links, device nodes, modules and the shared init library."""
    a = Archive()
    for d in ("proc", "sys", "dev", "tmp", "run", "mnt", "root", "etc/bms"):
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.chardev("dev/null", 1, 3, 0o666)
    a.file("bin/busybox", src.busybox.read_bytes(), 0o755)
    for applet in _applets(src.busybox):
        if applet != "bin/busybox":
            a.symlink(applet, "/bin/busybox")
    a.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    a.file("etc/group", b"root:x:0:\n")
    tree = ModuleTree.find(src.kernel_root)
    mods = tree.closure(modules)
    base = f"lib/modules/{tree.version}"
    for m in mods:
        a.file(f"{base}/{m.relpath}", m.data)
    a.file(f"{base}/modules.dep", modules_dep(mods).encode())
    a.file("etc/bms/modules", "".join(m.relpath + "\n" for m in mods).encode())
    a.file("lib/bms/common.sh", resource("common.sh"))
    a.file("etc/bms/udhcpc.script", resource("udhcpc.script"), 0o755)
    return a


def add_sfdisk(archive: Archive, cache_dir: Path) -> list[str]:
    """``sbin/sfdisk`` (or ``usr/sbin``) with its loader and libraries; the paths added."""
    roots = PackageRoots([u.root for u in debs.fetch_all(SFDISK_PACKAGES, cache_dir)])
    return add_program(archive, roots, SFDISK)


def pack(archive: Archive) -> bytes:
    """The gzipped cpio: no name, mtime 0 in the gzip header (like ``gzip -n``)."""
    return gzip.compress(archive.serialize(source_date_epoch()), compresslevel=9, mtime=0)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def build(
    out_dir: Path,
    cache_dir: Path,
    modules: list[str] | tuple[str, ...] = NIC_MODULES + DISK_MODULES,
    agent: bytes | None = None,
) -> RamdiskFiles:
    """Write ``deploy.kernel`` and ``deploy.initramfs`` into ``out_dir``."""
    src = fetch_sources(cache_dir)
    a = base_archive(src, modules)
    add_sfdisk(a, cache_dir)
    a.file("init", resource("init.sh"), 0o755)
    a.file("bin/bms-agent", agent if agent is not None else resource("agent.sh"), 0o755)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = RamdiskFiles(out_dir / "deploy.kernel", out_dir / "deploy.initramfs")
    _write(files.kernel, src.vmlinuz.read_bytes())
    _write(files.initramfs, pack(a))
    return files
