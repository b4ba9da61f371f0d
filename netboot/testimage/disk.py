"""Byte-level pieces of the test image: an MBR with one partition, FAT timestamps."""

from __future__ import annotations

import struct
from collections.abc import Iterator
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


@dataclass(frozen=True)
class _Fat16:
    """Where a FAT12/16 filesystem keeps its FAT, root directory and clusters (bytes)."""

    fat: int
    root: int
    root_entries: int
    data: int
    cluster_bytes: int
    fat12: bool

    @classmethod
    def parse(cls, fs: bytes | bytearray) -> _Fat16:
        bps, spc, reserved, nfats, root_entries = struct.unpack_from("<HBHBH", fs, 11)
        (fat_sectors,) = struct.unpack_from("<H", fs, 22)
        if root_entries == 0 or fat_sectors == 0:
            raise ValueError("not FAT12/16 (FAT32 keeps its root directory in clusters)")
        root = (reserved + nfats * fat_sectors) * bps
        data = root + -(-root_entries * 32 // bps) * bps
        clusters = (len(fs) - data) // (spc * bps)
        return cls(reserved * bps, root, root_entries, data, spc * bps, clusters < 4085)

    def chain(self, fs: bytes | bytearray, cluster: int) -> Iterator[int]:
        """Byte offsets of a directory's cluster chain (FAT16: what mformat makes for this
        image's sizes; FAT12's packed 12-bit entries are not read)."""
        if self.fat12:
            raise ValueError("subdirectories on FAT12 are not supported")
        seen = 0
        while 2 <= cluster < 0xFFF8 and seen < len(fs) // self.cluster_bytes:
            yield self.data + (cluster - 2) * self.cluster_bytes
            (cluster,) = struct.unpack_from("<H", fs, self.fat + 2 * cluster)
            seen += 1


def _entries(fs: bytes | bytearray, start: int, count: int) -> Iterator[int]:
    """Offsets of the used short-name entries among ``count`` at ``start``."""
    for i in range(count):
        e = start + 32 * i
        if fs[e] == 0:
            return
        if fs[e] != 0xE5 and fs[e + 11] != 0x0F:  # deleted, long-name part: no times
            yield e


def fix_fat_times(fs: bytearray, epoch: int) -> int:
    """Set every timestamp in a FAT12/16 directory tree to ``epoch`` (mtools and syslinux
    stamp files and directories with the time they ran). Returns the number of entries."""
    geo = _Fat16.parse(fs)
    date, tm = _fat_date_time(epoch)
    todo = [(geo.root, geo.root_entries)]
    fixed = 0
    while todo:
        start, count = todo.pop()
        for e in _entries(fs, start, count):
            fs[e + 13] = 0
            struct.pack_into("<HHH", fs, e + 14, tm, date, date)  # created time/date, accessed
            struct.pack_into("<HH", fs, e + 22, tm, date)  # written time/date
            fixed += 1
            if fs[e + 11] & 0x10 and fs[e] != 0x2E:  # a subdirectory, not "." or ".."
                (cluster,) = struct.unpack_from("<H", fs, e + 26)
                per_cluster = geo.cluster_bytes // 32
                todo += [(off, per_cluster) for off in geo.chain(fs, cluster)]
    return fixed
