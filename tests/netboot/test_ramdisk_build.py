"""The deploy ramdisk build: contents, module dependencies, reproducibility."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from netboot.ramdisk.build import RamdiskFiles, build
from netboot.ramdisk.cpio import Archive
from netboot.ramdisk.elf import LIB_DIRS, ElfError, PackageRoots, dynamic


def read_cpio(data: bytes) -> dict[str, tuple[int, int, bytes]]:
    """name → (mode, mtime, data) of a newc archive."""
    out: dict[str, tuple[int, int, bytes]] = {}
    i = 0
    while True:
        assert data[i : i + 6] == b"070701", i
        f = [int(data[i + 6 + 8 * k : i + 14 + 8 * k], 16) for k in range(13)]
        mode, uid, gid, mtime, size, namesize = f[1], f[2], f[3], f[5], f[6], f[11]
        assert (uid, gid) == (0, 0)
        name = data[i + 110 : i + 110 + namesize - 1].decode()
        i += 110 + namesize
        i += -i % 4
        body = data[i : i + size]
        i += size
        i += -i % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, mtime, body)


def test_cpio_roundtrip_and_parents() -> None:
    a = Archive()
    a.file("etc/x/y", b"hello", 0o600)
    a.symlink("bin/sh", "/bin/busybox")
    a.chardev("dev/console", 5, 1)
    entries = read_cpio(a.serialize(1234))
    assert (
        list(entries)
        == sorted(entries)
        == ["bin", "bin/sh", "dev", "dev/console", "etc", "etc/x", "etc/x/y"]
    )
    assert entries["etc/x/y"] == (stat.S_IFREG | 0o600, 1234, b"hello")
    assert entries["bin/sh"][2] == b"/bin/busybox"
    assert stat.S_ISDIR(entries["etc/x"][0])


def test_ramdisk_contents(ramdisk: RamdiskFiles) -> None:
    assert ramdisk.kernel.read_bytes()[0x202:0x206] == b"HdrS"  # a bzImage
    raw = ramdisk.initramfs.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, no mtime
    files = read_cpio(gzip.decompress(raw))
    assert stat.S_IMODE(files["init"][0]) == 0o755
    assert files["init"][2].startswith(b"#!/bin/sh")
    assert files["bin/sh"][2] == b"/bin/busybox"
    assert files["bin/bms-agent"][2] == Path("netboot/ramdisk/agent.sh").read_bytes()
    assert stat.S_ISCHR(files["dev/console"][0])
    assert {m for _, m, _ in files.values()} == {0}
    order = files["etc/bms/modules"][2].decode().split()
    names = [p.rsplit("/", 1)[1] for p in order]
    for needed in (
        "e1000.ko",
        "virtio_net.ko",
        "virtio_blk.ko",
        "virtio_pci.ko",
        "ahci.ko",
        "sd_mod.ko",
    ):
        assert needed in names
    # Dependencies load first.
    for mod, deps in (
        ("virtio_net.ko", ["virtio.ko", "virtio_ring.ko", "net_failover.ko"]),
        ("ahci.ko", ["libahci.ko", "libata.ko"]),
        ("sd_mod.ko", ["scsi_mod.ko"]),
    ):
        for dep in deps:
            assert names.index(dep) < names.index(mod), (dep, mod)
    kver = next(n for n in files if n.startswith("lib/modules/")).split("/")[2]
    for p in order:
        assert f"lib/modules/{kver}/{p}" in files
        assert files[f"lib/modules/{kver}/{p}"][2][:4] == b"\x7fELF"  # uncompressed
    dep = files[f"lib/modules/{kver}/modules.dep"][2].decode()
    assert "kernel/drivers/net/virtio_net.ko: " in dep


def test_two_builds_are_identical(ramdisk: RamdiskFiles, deb_cache: Path, tmp_path: Path) -> None:
    again = build(tmp_path, deb_cache)
    assert again.initramfs.read_bytes() == ramdisk.initramfs.read_bytes()
    assert again.kernel.read_bytes() == ramdisk.kernel.read_bytes()


def test_package_roots_follow_symlinks_inside_the_packages(tmp_path: Path) -> None:
    libc, loader = tmp_path / "libc6", tmp_path / "other"
    (libc / "lib64").mkdir(parents=True)
    (libc / "lib64" / "ld.so").symlink_to("/lib/x86_64-linux-gnu/ld-2.so")  # absolute
    (loader / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (loader / "usr/lib/x86_64-linux-gnu/ld-2.so").write_bytes(b"loader")
    (libc / "lib/x86_64-linux-gnu").mkdir(parents=True)
    (libc / "lib/x86_64-linux-gnu/libc.so.6").symlink_to("../../usr/lib/x86_64-linux-gnu/ld-2.so")
    (libc / "lib/x86_64-linux-gnu/host").symlink_to("/etc/hostname")  # on the host only
    roots = PackageRoots([libc, loader])
    assert roots.library("libc.so.6") == "lib/x86_64-linux-gnu/libc.so.6"
    assert roots.resolve("lib/x86_64-linux-gnu/libc.so.6").read_bytes() == b"loader"
    assert roots.find("/lib/x86_64-linux-gnu/ld-2.so") == "usr/lib/x86_64-linux-gnu/ld-2.so"
    with pytest.raises(ElfError):
        roots.resolve("lib64/ld.so")  # /lib/..., not /usr/lib/...: no merged-/usr guess
    with pytest.raises(ElfError):
        roots.resolve("lib/x86_64-linux-gnu/host")
    with pytest.raises(ElfError, match=r"libnope\.so\.1"):
        roots.library("libnope.so.1")


def _archive_file(files: dict[str, tuple[int, int, bytes]], path: str) -> bytes:
    """A regular file of the archive, its symlinks followed inside the archive."""
    for _ in range(10):
        mode, _, data = files[path.lstrip("/")]
        if not stat.S_ISLNK(mode):
            return data
        path = os.path.normpath(os.path.join(os.path.dirname("/" + path), data.decode()))
    raise AssertionError(f"{path}: symlink loop")


def _extract(files: dict[str, tuple[int, int, bytes]], root: Path) -> Path:
    for name, (mode, _, data) in files.items():
        p = root / name
        if stat.S_ISDIR(mode):
            p.mkdir(parents=True, exist_ok=True)
        elif stat.S_ISLNK(mode):
            p.symlink_to(data.decode())
        elif stat.S_ISREG(mode):
            p.write_bytes(data)
            p.chmod(stat.S_IMODE(mode))
    return root


def test_ramdisk_has_a_working_sfdisk(ramdisk: RamdiskFiles, tmp_path: Path) -> None:
    files = read_cpio(gzip.decompress(ramdisk.initramfs.read_bytes()))
    sfdisk = next(p for p in ("sbin/sfdisk", "usr/sbin/sfdisk") if p in files)  # in /init's PATH
    # The loader and every library of the closure are in the archive, where the loader looks.
    todo, seen = [_archive_file(files, sfdisk)], set()
    interp = dynamic(todo[0]).interp
    assert interp is not None and _archive_file(files, interp)[:4] == b"\x7fELF"
    while todo:
        for soname in dynamic(todo.pop()).needed:
            if soname not in seen:
                seen.add(soname)
                path = next((f"{d}/{soname}" for d in LIB_DIRS if f"{d}/{soname}" in files), None)
                assert path is not None, f"{soname} is not in the initramfs"
                todo.append(_archive_file(files, path))
    assert {"libfdisk.so.1", "libblkid.so.1", "libc.so.6"} <= seen
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("running the initramfs's sfdisk needs root (chroot)")
    # Run it inside the unpacked initramfs: no host library can help.
    root = _extract(files, tmp_path / "root")
    disk = root / "tmp" / "disk"
    disk.write_bytes(bytes(4 << 20))
    run = subprocess.run(
        ["chroot", str(root), f"/{sfdisk}", "-q", "/tmp/disk"],
        input="label: gpt\nsize=1MiB, type=L, name=config-2\n",
        capture_output=True,
        text=True,
        env={"PATH": "/sbin:/bin"},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    host = shutil.which("sfdisk", path="/usr/sbin:/sbin")
    if host is not None:
        table = json.loads(subprocess.check_output([host, "-J", str(disk)]))["partitiontable"]
        assert table["label"] == "gpt"
        assert [p["name"] for p in table["partitions"]] == ["config-2"]
