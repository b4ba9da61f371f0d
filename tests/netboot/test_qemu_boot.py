"""Boot the deploy ramdisk in QEMU (TCG, user-mode network: the guest reaches the host's
127.0.0.1 as 10.0.2.2) against the protocol double: lookup, heartbeats, commands on a
virtio disk; then the full chain: write the test image and an ISO config drive, power
off, boot the disk, and receive the test image's callback."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from netboot.ramdisk.build import RamdiskFiles
from tests.netboot.protocol_double import PortalDouble, Server

pytestmark = pytest.mark.qemu
MAC = "52:54:00:b5:00:01"
MiB = 1 << 20


@pytest.fixture(autouse=True)
def _qemu() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")


def _fingerprint(pub: str) -> str:
    digest = hashlib.sha256(base64.b64decode(pub.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _qemu_args(disk: Path, serial: Path, *extra: str) -> list[str]:
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-display", "none", "-no-reboot",
        "-netdev", "user,id=n0", "-device", f"e1000,netdev=n0,mac={MAC}",
        "-drive", f"file={disk},format=raw,if=virtio", "-serial", f"file:{serial}", *extra,
    ]  # fmt: skip


def _boot_ramdisk(ramdisk: RamdiskFiles, disk: Path, serial: Path, port: int) -> int:
    """Run the ramdisk until the guest powers off; the exit status of QEMU."""
    args = _qemu_args(
        disk, serial, "-kernel", str(ramdisk.kernel), "-initrd", str(ramdisk.initramfs),
        "-append", f"console=ttyS0 bms_api=http://10.0.2.2:{port} bms_boot=boot-token",
    )  # fmt: skip
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        return p.wait(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_ramdisk_boots_and_runs_commands(ramdisk: RamdiskFiles, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\xaa" * (32 * MiB))
    image = os.urandom(2 * MiB)
    d = PortalDouble(macs={MAC}, heartbeat_interval=1, end_when_done=False)
    inv = d.add("inventory")
    wipe = d.add("wipe", mode="metadata", verify=True)
    d.files["img"] = image
    with Server(d) as server:
        write = d.add(
            "write_image", url=f"http://10.0.2.2:{server.port}/files/img",
            sha256=hashlib.sha256(image).hexdigest(), size=len(image),
        )  # fmt: skip
        off = d.add("power_off")
        rc = _boot_ramdisk(ramdisk, disk, tmp_path / "serial.log", server.port)
    log = (tmp_path / "serial.log").read_text(errors="replace")
    assert rc == 0, log
    assert d.done, log
    paths = [c.path for c in d.calls]
    assert paths[0] == "/v1/agent/lookup" and "/v1/agent/heartbeat" in paths
    i = d.results[inv]["result"]
    assert i["disks"] == [
        {"name": "vda", "size_bytes": 32 * MiB, "model": "", "rotational": True, "removable": False}
    ]
    assert i["nics"] == [{"name": "eth0", "mac": MAC, "link": True}]
    assert d.results[wipe]["ok"] and d.results[wipe]["result"]["verified"] is True
    assert d.results[write]["ok"], log
    assert d.results[write]["result"]["disk"] == "/dev/vda"
    assert d.results[off]["ok"]
    data = disk.read_bytes()
    assert data[: len(image)] == image
    assert data[-MiB:] == bytes(MiB)  # wiped before the write


def test_ramdisk_writes_a_configdrive_on_gpt(ramdisk: RamdiskFiles, tmp_path: Path) -> None:
    """The initramfs's own sfdisk on a virtio disk: a GPT whole-disk image, then the config
    drive at the end of the disk, the backup GPT moved there."""
    from netboot import configdrive

    sfdisk = shutil.which("sfdisk", path="/usr/sbin:/sbin")
    if sfdisk is None:
        pytest.skip("sfdisk is not installed (apt-get install fdisk)")
    image_file = tmp_path / "image.raw"
    image_file.write_bytes(bytes(4 * MiB))
    subprocess.run(
        [sfdisk, "-q", str(image_file)], input="label: gpt\nstart=2048, type=L\n", text=True,
        check=True,
    )  # fmt: skip
    image = image_file.read_bytes()
    iso = configdrive.build(configdrive.ConfigDrive(uuid="u-gpt", hostname="gpt-1"))
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(32 * MiB))
    d = PortalDouble(macs={MAC}, heartbeat_interval=1, end_when_done=False)
    d.files["img"] = image
    d.files["cd.iso"] = iso
    with Server(d) as server:
        base = f"http://10.0.2.2:{server.port}/files"
        write = d.add(
            "write_image", url=f"{base}/img", sha256=hashlib.sha256(image).hexdigest(),
            size=len(image),
        )  # fmt: skip
        cdw = d.add("write_configdrive", url=f"{base}/cd.iso", label="config-2")
        d.add("power_off")
        rc = _boot_ramdisk(ramdisk, disk, tmp_path / "serial.log", server.port)
    log = (tmp_path / "serial.log").read_text(errors="replace")
    assert rc == 0 and d.done, log
    assert d.results[write]["ok"], log
    r = d.results[cdw]
    assert r["ok"], (r, log)
    start = (32 * MiB // 512 - 34 + 1 - 2048) // 2048 * 2048
    assert r["result"] == {
        "partition": "/dev/vda2", "number": 2, "start_sector": start, "sectors": 2048,
        "label": "config-2",
    }  # fmt: skip
    verify = subprocess.run([sfdisk, "--verify", str(disk)], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr == "", verify.stdout + verify.stderr
    parts = json.loads(subprocess.check_output([sfdisk, "-J", str(disk)]))["partitiontable"]
    assert [(p["start"], p["size"], p.get("name")) for p in parts["partitions"]][1] == (
        start, 2048, "config-2",
    )  # fmt: skip
    data = disk.read_bytes()
    assert data[start * 512 : start * 512 + len(iso)] == iso


def test_deploy_chain_boots_the_test_image(
    ramdisk: RamdiskFiles, test_image: Path, tmp_path: Path
) -> None:
    from netboot import configdrive

    disk = tmp_path / "disk.raw"
    with disk.open("wb") as f:
        f.truncate(64 * MiB)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE8cVSuA4MFyNp+4jS5A8dd1k1GMG2lLb5bPAgSySHFs t@x"
    d = PortalDouble(macs={MAC}, heartbeat_interval=1, end_when_done=False)
    image = test_image.read_bytes()
    d.files["image"] = image
    with Server(d) as server:
        cd = configdrive.ConfigDrive(
            uuid="11111111-2222-3333-4444-555555555555",
            hostname="chain-1",
            public_keys=[key],
            addresses=[configdrive.Address(MAC, "10.0.2.15", "10.0.2.0/24", "10.0.2.2")],
            meta={"bms_callback": f"http://10.0.2.2:{server.port}/callback"},
        )
        d.files["cd.iso"] = configdrive.build(cd)
        base = f"http://10.0.2.2:{server.port}/files"
        write = d.add(
            "write_image",
            url=f"{base}/image",
            sha256=hashlib.sha256(image).hexdigest(),
            size=len(image),
        )
        cdw = d.add("write_configdrive", url=f"{base}/cd.iso", label="config-2")
        d.add("power_off")
        assert _boot_ramdisk(ramdisk, disk, tmp_path / "deploy.log", server.port) == 0
        log = (tmp_path / "deploy.log").read_text(errors="replace")
        assert d.done and d.results[write]["ok"], log
        assert d.results[cdw]["ok"], (d.results[cdw], log)
        assert d.results[cdw]["result"]["partition"] == "/dev/vda2"

        serial = tmp_path / "boot.log"
        p = subprocess.Popen(
            _qemu_args(disk, serial), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 240
            while not d.callbacks and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.5)
        finally:
            p.kill()
            p.wait()
    boot_log = serial.read_text(errors="replace")
    assert d.callbacks == [
        {
            "uuid": "11111111-2222-3333-4444-555555555555",
            "hostname": "chain-1",
            "ssh_fingerprint": _fingerprint(key),
            "ip": "10.0.2.15",
        }
    ], boot_log
