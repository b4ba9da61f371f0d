"""The tiny bootable test image: partition table, files, reproducibility; its first-boot
script under busybox against a config drive directory."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from netboot.testimage.build import PART_START, VOLUME_LABEL, build_test_image, directories
from netboot.testimage.disk import read_partitions
from tests.netboot.agent_harness import applet_dir, busybox

FIRSTBOOT = Path(__file__).resolve().parents[2] / "netboot" / "testimage" / "firstboot.sh"
JSONFLAT = FIRSTBOOT.with_name("jsonflat.awk")


def _mtools(*args: str) -> str:
    if shutil.which("mtype") is None:
        pytest.skip("mtools is not installed")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(args, env=env, capture_output=True, check=True).stdout.decode("latin-1")


def test_partition_table_and_files(test_image: Path) -> None:
    data = test_image.read_bytes()
    assert 10 << 20 < len(data) < 64 << 20
    (part,) = read_partitions(data)
    assert part.start == PART_START and part.bootable and part.type == 0x0E
    assert (part.start + part.sectors) * 512 == len(data)
    assert data[440:446] == bytes(6)  # no disk signature: reproducible
    fs = data[part.start * 512 :]
    assert fs[3:11] == b"SYSLINUX"  # the boot sector syslinux --install wrote
    assert fs[43:54] == VOLUME_LABEL.encode().ljust(11)
    img = f"{test_image}@@{part.start * 512}"
    listing = _mtools("mdir", "-a", "-i", img, "::/")
    for name in ("ldlinux  sys", "ldlinux  c32", "vmlinuz", "initrd   gz", "syslinux cfg"):
        assert name in listing.lower(), listing
    cfg = _mtools("mtype", "-i", img, "::/syslinux.cfg")
    assert "LINUX /vmlinuz" in cfg and "INITRD /initrd.gz" in cfg and "console=ttyS0" in cfg
    # UEFI: SYSLINUX's EFI build at the removable-media path, ldlinux.e64 beside it.
    efi = _mtools("mdir", "-a", "-i", img, "::/EFI/BOOT").lower()
    assert "bootx64  efi" in efi and "ldlinux  e64" in efi, efi
    assert _mtools("mtype", "-i", img, "::/EFI/BOOT/BOOTX64.EFI")[:2] == "MZ"  # a PE image
    # Every entry of every directory carries SOURCE_DATE_EPOCH (clamped to FAT's 1980).
    stamps = re.findall(r"\d{4}-\d\d-\d\d +\d+:\d\d", _mtools("mdir", "-/", "-a", "-i", img, "::/"))
    assert len(stamps) == 13 and set(stamps) == {"1980-01-01   0:00"}, stamps


def test_directories_lists_parents_first() -> None:
    files = {"EFI/BOOT/BOOTX64.EFI": b"", "EFI/BOOT/ldlinux.e64": b"", "vmlinuz": b"", "a/b": b""}
    assert directories(files) == ["EFI", "a", "EFI/BOOT"]


def test_two_builds_are_identical(test_image: Path, deb_cache: Path, tmp_path: Path) -> None:
    again = build_test_image(tmp_path / "again.raw", deb_cache)
    assert again.read_bytes() == test_image.read_bytes()


# --- firstboot.sh off-box ---------------------------------------------------------------


def _fingerprint(pub: str) -> str:
    digest = hashlib.sha256(base64.b64decode(pub.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _Callback(http.server.BaseHTTPRequestHandler):
    bodies: list[Any] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_firstboot_reads_config_drive_and_calls_back(tmp_path: Path) -> None:
    busybox()
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE8cVSuA4MFyNp+4jS5A8dd1k1GMG2lLb5bPAgSySHFs me@host"
    handler = type("H", (_Callback,), {"bodies": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        latest = tmp_path / "cd" / "openstack" / "latest"
        latest.mkdir(parents=True)
        meta = {
            "uuid": "u-1",
            "hostname": 'vm-"1"',
            "public_keys": {"key-0": key},
            "meta": {"bms_callback": f"http://127.0.0.1:{httpd.server_address[1]}/cb"},
        }
        (latest / "meta_data.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        net = {
            "links": [{"id": "link0", "type": "phy", "ethernet_mac_address": "52:54:00:AB:CD:EF"}],
            "networks": [
                {
                    "id": "network0",
                    "type": "ipv4",
                    "link": "link0",
                    "ip_address": "192.0.2.10",
                    "netmask": "255.255.255.0",
                    "network_id": "n",
                    "routes": [
                        {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}
                    ],
                }
            ],
            "services": [{"type": "dns", "address": "192.0.2.53"}],
        }
        (latest / "network_data.json").write_text(json.dumps(net, indent=1))
        sysfs = tmp_path / "sys" / "class" / "net"
        for name, mac in (
            ("lo", "00:00:00:00:00:00"),
            ("eth0", "52:54:00:00:00:01"),
            ("eth1", "52:54:00:ab:cd:ef"),
        ):
            (sysfs / name).mkdir(parents=True)
            (sysfs / name / "address").write_text(mac + "\n")
        env = {
            "PATH": str(applet_dir(tmp_path)),
            "BMS_SYSFS": str(tmp_path / "sys"),
            "BMS_NET_DRY_RUN": "1",
            "BMS_JSONFLAT": str(JSONFLAT),
            "BMS_CMDLINE": "/dev/null",
            "BMS_CALLBACK_TRIES": "3",
            "TMPDIR": str(tmp_path),
        }
        p = subprocess.run(
            [busybox(), "sh", str(FIRSTBOOT), str(tmp_path / "cd")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:3] == [
        "ip link set eth1 up",
        "ip -4 addr add 192.0.2.10/24 dev eth1",
        "ip -4 route add default via 192.0.2.1 dev eth1",
    ]
    assert handler.bodies == [
        {
            "uuid": "u-1",
            "hostname": 'vm-"1"',
            "ssh_fingerprint": _fingerprint(key),
            "ip": "192.0.2.10",
        }
    ]
    if shutil.which("ssh-keygen"):
        (tmp_path / "k.pub").write_text(key + "\n")
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(tmp_path / "k.pub")],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.split()[1] == _fingerprint(key)
