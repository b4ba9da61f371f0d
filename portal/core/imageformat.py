"""What an image's bytes really are, read from their first bytes at upload.

The declared ``disk_format`` is checked, not trusted. A qcow2 file can name a backing file
or an external data file anywhere on the host, and a converter that follows it copies that
file into a tenant's disk (CVE-2024-32498 in Glance, Nova and Cinder); a qcow2 labelled
``raw`` would be written to a disk as-is and never boot. Both are refused here, at upload,
with the reason; the worker checks again with ``qemu-img info`` before it converts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER_BYTES = 512  # enough for every header field read below
# The largest disk an image may describe: what a signed 64-bit size column holds (qemu's
# own limit is lower); a header claiming more is corrupt or hostile.
MAX_VIRTUAL_SIZE = 2**63 - 1
DISK_FORMATS = ("raw", "qcow2")

QCOW2_MAGIC = b"QFI\xfb"
# Incompatible feature bits (qcow2 v3): 0 dirty, 1 corrupt, 2 external data file,
# 3 compression type, 4 extended L2 entries. Anything above is unknown to qemu-img 7.
_QCOW2_CORRUPT = 1 << 1
_QCOW2_DATA_FILE = 1 << 2
_QCOW2_KNOWN = (1 << 5) - 1

# Other formats, by the bytes at an offset: uploaded as "raw" they are a mistake.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, QCOW2_MAGIC, "qcow2"),
    (0, b"QEF\x00", "qed"),
    (0, b"KDMV", "vmdk"),
    (0, b"# Disk DescriptorFile", "vmdk"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"conectix", "vhd"),
    (0x40, b"\x7f\x10\xda\xbe", "vdi"),
    (0, b"LUKS\xba\xbe", "luks"),
)


class FormatError(ValueError):
    """The bytes do not match the declared format, or are unsafe to convert; ``field`` is
    the image field the problem is about."""

    def __init__(self, message: str, field: str = "disk_format") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FormatInfo:
    format: str
    virtual_size: int | None  # the disk size the image describes; None for raw (= its size)


def detect(header: bytes) -> str:
    """The format the first bytes show; ``raw`` when no known signature matches."""
    for offset, magic, name in _SIGNATURES:
        if header[offset : offset + len(magic)] == magic:
            return name
    return "raw"


def qcow2_info(header: bytes) -> FormatInfo:
    """Parse and vet a qcow2 header (big-endian, see qemu's docs/interop/qcow2.txt)."""
    if len(header) < 72 or header[:4] != QCOW2_MAGIC:
        raise FormatError("the data is not a qcow2 image (no qcow2 header)")
    version, backing_offset, _backing_len, cluster_bits, size, crypt = struct.unpack_from(
        ">IQIIQI", header, 4
    )
    if version not in (2, 3):
        raise FormatError(f"qcow2 version {version} is not supported (2 and 3 are)")
    if backing_offset:
        raise FormatError(
            "the qcow2 image names a backing file: upload a standalone image "
            "(qemu-img convert -O qcow2 in.qcow2 out.qcow2 flattens it)"
        )
    if crypt:
        raise FormatError("the qcow2 image is encrypted: upload an unencrypted image")
    if not 9 <= cluster_bits <= 21:
        raise FormatError(f"qcow2 cluster_bits {cluster_bits} is out of range (9-21)")
    if version == 3:
        if len(header) < 104:
            raise FormatError("the qcow2 v3 header is truncated")
        (incompatible,) = struct.unpack_from(">Q", header, 72)
        if incompatible & _QCOW2_DATA_FILE:
            raise FormatError("the qcow2 image uses an external data file: not allowed")
        if incompatible & _QCOW2_CORRUPT:
            raise FormatError("the qcow2 image is marked corrupt")
        if incompatible & ~_QCOW2_KNOWN:
            raise FormatError(
                f"the qcow2 image has unknown incompatible features {incompatible:#x}"
            )
    if size == 0:
        raise FormatError("the qcow2 image has a virtual size of 0", field="virtual_size")
    if size > MAX_VIRTUAL_SIZE:
        raise FormatError(
            f"the qcow2 header claims a virtual size of {size} bytes; "
            f"at most {MAX_VIRTUAL_SIZE} (2^63-1) is allowed",
            field="virtual_size",
        )
    return FormatInfo("qcow2", size)


def check(declared: str, header: bytes) -> FormatInfo:
    """The image's format facts if its first bytes match ``declared``; else FormatError."""
    found = detect(header)
    if declared == "qcow2":
        return qcow2_info(header)
    if declared == "raw":
        if found != "raw":
            raise FormatError(
                f"the data is a {found} image, but disk_format is raw: "
                f"create the image with disk_format {found}"
                if found in DISK_FORMATS
                else f"the data is a {found} image; allowed: {', '.join(DISK_FORMATS)} "
                f"(convert it, e.g. qemu-img convert -O raw)"
            )
        return FormatInfo("raw", None)
    raise FormatError(f"disk_format {declared!r} is not one of {', '.join(DISK_FORMATS)}")
