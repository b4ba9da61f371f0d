"""Byte-level pieces of the test image: an MBR with one partition, FAT timestamps."""

from __future__ import annotations

import struct
from dataclasses import dataclass

SECTOR = 512


@dataclass(frozen=True)
class Partition:
    start: int  # sectors
    sectors: int
    type: int
    bootable: bool


def mbr(boot_code: bytes, parts: list[Partition]) -> bytes:
    """A 512-byte MBR: ``boot_code`` (≤ 440 bytes, e.g. syslinux's mbr.bin), a zero disk
    signature (reproducible), and LBA-only entries (CHS fields fe ff ff)."""
    if len(boot_code) > 440:
        raise ValueError("MBR boot code is larger than 440 bytes")
    out = bytearray(SECTOR)
    out[: len(boot_code)] = boot_code
    for i, p in enumerate(parts):
        out[446 + 16 * i : 462 + 16 * i] = struct.pack(
            "<B3sB3sII", 0x80 if p.bootable else 0, b"\xfe\xff\xff", p.type, b"\xfe\xff\xff",
            p.start, p.sectors,
        )  # fmt: skip
    out[510:512] = b"\x55\xaa"
    return bytes(out)


def read_partitions(disk: bytes) -> list[Partition]:
    if disk[510:512] != b"\x55\xaa":
        raise ValueError("no MBR signature")
    parts = []
    for i in range(4):
        boot, _chs, ptype, _chs2, start, sectors = struct.unpack_from(
            "<B3sB3sII", disk, 446 + 16 * i
        )
        if ptype:
            parts.append(Partition(start, sectors, ptype, boot == 0x80))
    return parts


def _fat_date_time(epoch: int) -> tuple[int, int]:
    import time

    t = time.gmtime(max(epoch, 315532800))  # FAT dates start in 1980
    date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    return date, (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)


def fix_fat_root_times(fs: bytearray, epoch: int) -> int:
    """Set every timestamp of a FAT12/16 root directory's entries to ``epoch`` (mtools and
    syslinux stamp files with the time they ran). Returns the number of entries fixed."""
    bps, _spc, reserved, nfats, root_entries = struct.unpack_from("<HBHBH", fs, 11)
    (fat_sectors,) = struct.unpack_from("<H", fs, 22)
    if root_entries == 0 or fat_sectors == 0:
        raise ValueError("not FAT12/16 (FAT32 keeps its root directory in clusters)")
    date, tm = _fat_date_time(epoch)
    off = (reserved + nfats * fat_sectors) * bps
    fixed = 0
    for i in range(root_entries):
        e = off + 32 * i
        if fs[e] == 0:
            break
        if fs[e] == 0xE5 or fs[e + 11] == 0x0F:  # deleted, long-name part: no times
            continue
        fs[e + 13] = 0
        struct.pack_into("<HHH", fs, e + 14, tm, date, date)  # created time/date, accessed
        struct.pack_into("<HH", fs, e + 22, tm, date)  # written time/date
        fixed += 1
    return fixed
