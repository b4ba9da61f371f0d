"""A tiny bootable whole-disk test image: MBR (syslinux mbr.bin) + one FAT16 partition with
SYSLINUX, Debian's kernel and a busybox initramfs whose /init reads the config drive
(label config-2), configures its NIC statically and calls back (netboot/testimage/*.sh).

It boots under BIOS and UEFI alike: BIOS runs the MBR code and SYSLINUX's ``ldlinux.sys``;
UEFI firmware (OVMF) finds the removable-media path ``EFI/BOOT/BOOTX64.EFI`` on the same FAT
partition (type 0x0E is enough, no ESP type needed) and runs SYSLINUX's EFI build, which
loads ``ldlinux.e64`` from its own directory and reads the same ``/syslinux.cfg``.

Built without root or loop mounts: the FAT filesystem is made in a file with mtools
(``mformat``/``mcopy``), SYSLINUX is installed into it with the mtools-based ``syslinux``
installer, and the partition is placed after a 1 MiB gap behind the MBR. syslinux,
syslinux-common, syslinux-efi and mtools are fetched and unpacked into ``cache_dir`` like
the kernel (nothing is installed). Reproducible: fixed volume serial, zero disk signature,
the timestamps of every directory entry (subdirectories too) rewritten to
``SOURCE_DATE_EPOCH`` (clamped to 1980, FAT's epoch).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from netboot.ramdisk import debs
from netboot.ramdisk.build import base_archive, fetch_sources, pack, source_date_epoch
from netboot.testimage.disk import SECTOR, Partition, fix_fat_times, mbr

MiB = 1 << 20
PART_START = 2048  # sectors: 1 MiB
FAT16_LBA = 0x0E
VOLUME_LABEL = "BMSTEST"
VOLUME_SERIAL = "0x20261121"
TOOL_PACKAGES = ("syslinux", "syslinux-common", "mtools")
EFI_PACKAGE = "syslinux-efi"
EFI_DIR = "EFI/BOOT"
MODULES = (
    "virtio_pci", "virtio_blk", "virtio_scsi", "ahci", "ata_piix", "sd_mod", "nvme",
    "virtio_net", "e1000", "e1000e", "igb", "vfat", "nls_cp437", "nls_ascii", "nls_utf8",
    "isofs",
)  # fmt: skip


def _resource(name: str) -> bytes:
    return resources.files("netboot.testimage").joinpath(name).read_bytes()


def syslinux_cfg(callback: str | None) -> bytes:
    extra = f" bms_callback={callback}" if callback else ""
    return (
        "SERIAL 0 115200\nDEFAULT bms\nPROMPT 0\nTIMEOUT 1\n"
        "LABEL bms\n  LINUX /vmlinuz\n  INITRD /initrd.gz\n"
        f"  APPEND console=tty0 console=ttyS0,115200{extra}\n"
    ).encode()


def initramfs(cache_dir: Path) -> tuple[bytes, bytes]:
    """(kernel, gzipped initramfs) of the test image."""
    src = fetch_sources(cache_dir)
    a = base_archive(src, MODULES)
    a.file("init", _resource("init.sh"), 0o755)
    a.file("bin/bms-firstboot", _resource("firstboot.sh"), 0o755)
    a.file("lib/bms/jsonflat.awk", _resource("jsonflat.awk"))
    return src.vmlinuz.read_bytes(), pack(a)


def _run(args: list[str], env: dict[str, str]) -> None:
    p = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")


def fat_partition(files: dict[str, bytes], cache_dir: Path, tmp: Path) -> bytes:
    """A FAT16 filesystem holding ``files`` (paths relative to its root, ``/``-separated)
    with SYSLINUX installed."""
    roots = {p: debs.fetch(p, cache_dir).root for p in TOOL_PACKAGES}
    env = {
        "PATH": f"{roots['mtools'] / 'usr' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "MTOOLS_SKIP_CHECK": "1",
        "MTOOLSRC": "/dev/null",
        "TZ": "UTC",
        "LC_ALL": "C",
    }
    payload = sum(len(d) for d in files.values())
    size = (payload // MiB + 8) * MiB
    part = tmp / "part.img"
    with part.open("wb") as f:
        f.truncate(size)
    mtools = str(roots["mtools"] / "usr" / "bin" / "mtools")
    _run([mtools, "-c", "mformat", "-i", str(part), "-T", str(size // SECTOR), "-h", "64",
          "-s", "32", "-H", str(PART_START), "-v", VOLUME_LABEL, "-N", VOLUME_SERIAL[2:],
          "::"], env)  # fmt: skip
    for folder in directories(files):
        _run([mtools, "-c", "mmd", "-i", str(part), f"::/{folder}"], env)
    for i, (name, data) in enumerate(sorted(files.items())):
        src = tmp / f"file{i}"
        src.write_bytes(data)
        _run([mtools, "-c", "mcopy", "-i", str(part), str(src), f"::/{name}"], env)
    _run([str(roots["syslinux"] / "usr" / "bin" / "syslinux"), "--install", str(part)], env)
    fs = bytearray(part.read_bytes())
    fix_fat_times(fs, source_date_epoch())
    return bytes(fs)


def directories(files: dict[str, bytes]) -> list[str]:
    """Every directory the ``/``-separated paths of ``files`` need, parents first."""
    out: set[str] = set()
    for name in files:
        parts = name.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(out, key=lambda d: (d.count("/"), d))


def efi_files(cache_dir: Path) -> dict[str, bytes]:
    """SYSLINUX for UEFI at the removable-media path; ``ldlinux.e64`` must sit beside it."""
    efi = debs.fetch(EFI_PACKAGE, cache_dir).root / "usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"
    common = debs.fetch("syslinux-common", cache_dir).root / "usr/lib/syslinux/modules/efi64"
    return {
        f"{EFI_DIR}/BOOTX64.EFI": efi.read_bytes(),
        f"{EFI_DIR}/ldlinux.e64": (common / "ldlinux.e64").read_bytes(),
    }


def build_test_image(out: Path, cache_dir: Path, callback: str | None = None) -> Path:
    """Write the whole-disk raw image to ``out``; ``callback`` is baked into the kernel
    command line (``bms_callback=``) as a fallback for meta_data.json's ``meta``."""
    kernel, initrd = initramfs(cache_dir)
    boot = debs.fetch("syslinux-common", cache_dir).root / "usr/lib/syslinux/mbr/mbr.bin"
    files = {"vmlinuz": kernel, "initrd.gz": initrd, "syslinux.cfg": syslinux_cfg(callback)}
    files.update(efi_files(cache_dir))
    with tempfile.TemporaryDirectory(prefix="bms-testimage-") as t:
        fs = fat_partition(files, cache_dir, Path(t))
    table = mbr(boot.read_bytes(), [Partition(PART_START, len(fs) // SECTOR, FAT16_LBA, True)])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(table)
        f.write(bytes(PART_START * SECTOR - len(table)))
        f.write(fs)
    tmp.replace(out)
    return out
