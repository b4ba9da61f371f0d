"""The deploy ramdisk build: contents, module dependencies, reproducibility."""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

from netboot.ramdisk.build import RamdiskFiles, build
from netboot.ramdisk.cpio import Archive


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
