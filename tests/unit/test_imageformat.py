"""Image format checks at upload: headers crafted byte by byte, and real ones from qemu-img."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from portal.core.imageformat import FormatError, check, detect, qcow2_info

GIB = 1024**3


def qcow2_header(
    version: int = 3,
    backing: int = 0,
    cluster_bits: int = 16,
    size: int = GIB,
    crypt: int = 0,
    incompatible: int = 0,
) -> bytes:
    head = b"QFI\xfb" + struct.pack(">IQIIQI", version, backing, 0, cluster_bits, size, crypt)
    head = head.ljust(72, b"\0") + struct.pack(">QQQII", incompatible, 0, 0, 4, 104)
    return head.ljust(512, b"\0")


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_a_plain_qcow2_header_gives_its_virtual_size() -> None:
    assert qcow2_info(qcow2_header(size=5 * GIB)).virtual_size == 5 * GIB
    assert check("qcow2", qcow2_header(version=2)).format == "qcow2"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (qcow2_header(backing=4096), "backing file"),
        (qcow2_header(crypt=1), "encrypted"),
        (qcow2_header(incompatible=1 << 2), "external data file"),
        (qcow2_header(incompatible=1 << 1), "corrupt"),
        (qcow2_header(incompatible=1 << 40), "unknown incompatible features"),
        (qcow2_header(version=4), "version 4"),
        (qcow2_header(cluster_bits=40), "cluster_bits"),
        (qcow2_header(size=0), "virtual size of 0"),
        (qcow2_header()[:80], "truncated"),
        (b"QFI\xfb", "not a qcow2"),
        (b"\0" * 512, "not a qcow2"),
        (b"", "not a qcow2"),
    ],
)
def test_unsafe_or_broken_qcow2_is_refused_with_the_reason(header: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        check("qcow2", header)


@pytest.mark.parametrize(
    ("header", "found"),
    [
        (qcow2_header(), "qcow2"),
        (b"KDMV" + b"\0" * 508, "vmdk"),
        (b"vhdxfile" + b"\0" * 504, "vhdx"),
        (b"\0" * 0x40 + b"\x7f\x10\xda\xbe" + b"\0" * 444, "vdi"),
        (b"LUKS\xba\xbe" + b"\0" * 506, "luks"),
    ],
)
def test_raw_must_not_be_another_format(header: bytes, found: str) -> None:
    assert detect(header) == found
    with pytest.raises(FormatError, match=f"is a {found} image"):
        check("raw", header)


def test_raw_is_anything_without_a_known_signature() -> None:
    mbr = b"\xeb\x63\x90" + b"\0" * 507 + b"\x55\xaa"
    for data in (mbr, b"", b"x", "é".encode() * 300):
        assert check("raw", data).format == "raw"
        assert check("raw", data).virtual_size is None


def test_unknown_declared_format_is_refused() -> None:
    with pytest.raises(FormatError, match="not one of raw, qcow2"):
        check("vmdk", b"KDMV")


def test_headers_written_by_qemu_img(tmp_path: Path) -> None:
    plain, backed, data_file = tmp_path / "a.qcow2", tmp_path / "b.qcow2", tmp_path / "c.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(plain), "3M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(plain), "-F", "qcow2", str(backed))
    qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        f"data_file={tmp_path / 'c.data'}",
        str(data_file),
        "1M",
    )
    assert check("qcow2", plain.read_bytes()[:512]).virtual_size == 3 * 1024**2
    with pytest.raises(FormatError, match="backing file"):
        check("qcow2", backed.read_bytes()[:512])
    with pytest.raises(FormatError, match="external data file"):
        check("qcow2", data_file.read_bytes()[:512])
    with pytest.raises(FormatError, match="is a qcow2 image, but disk_format is raw"):
        check("raw", plain.read_bytes()[:512])
