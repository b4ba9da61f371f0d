"""The shell deploy agent (netboot/ramdisk/agent.sh) under busybox sh, against a protocol
double of the portal, with a plain file as its disk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.netboot.agent_harness import (
    MAC,
    applet_dir,
    busybox,
    fake_sysfs,
    host_sfdisk,
    run_agent,
    session,
)
from tests.netboot.protocol_double import PortalDouble, Server

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _busybox() -> None:
    busybox()


def _disk(path: Path, size: int, fill: bytes = b"\xaa") -> Path:
    path.write_bytes(fill * size)
    return path


def _mbr_entry(start: int, sectors: int, ptype: int = 0x83) -> bytes:
    return struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff", start, sectors)


def _with_mbr(data: bytearray, entries: list[bytes]) -> bytearray:
    for i, e in enumerate(entries):
        data[446 + 16 * i : 462 + 16 * i] = e
    data[510:512] = b"\x55\xaa"
    return data


def _double() -> PortalDouble:
    return PortalDouble(macs={MAC})


def test_write_image_streams_to_disk_and_checks_sha256(tmp_path: Path) -> None:
    image = os.urandom(3 * MiB + 123)
    disk = _disk(tmp_path / "disk", 16 * MiB)
    d = _double()
    with Server(d) as server:
        sha = hashlib.sha256(image).hexdigest()
        cid = _serve_image(d, server, image, sha256=sha.upper(), size=len(image))
        run = run_agent(tmp_path, server, disk)
    assert run.returncode == 0, run.stderr
    r = d.results[cid]
    assert r["ok"] is True, r
    assert r["error"] is None
    assert r["node_id"] == "node-1"
    assert r["result"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert r["result"]["bytes"] == len(image)
    assert isinstance(r["result"]["seconds"], float | int)
    data = disk.read_bytes()
    assert len(data) == 16 * MiB  # a plain-file disk is not truncated
    assert data[: len(image)] == image
    assert set(data[len(image) :]) == {0xAA}


def _serve_image(d: PortalDouble, server: Server, image: bytes, **args: object) -> str:
    d.files["img.raw"] = image
    return d.add("write_image", url=f"http://127.0.0.1:{server.port}/files/img.raw", **args)


def test_write_image_wrong_checksum_is_a_failure(tmp_path: Path) -> None:
    image = os.urandom(MiB)
    disk = _disk(tmp_path / "disk", 4 * MiB)
    d = _double()
    with Server(d) as server:
        cid = _serve_image(d, server, image, sha256="0" * 64, size=len(image))
        run = run_agent(tmp_path, server, disk)
    assert run.returncode == 0, run.stderr
    r = d.results[cid]
    assert r["ok"] is False
    assert "checksum mismatch" in r["error"]
    assert r["result"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert r["result"]["bytes"] == len(image)


def test_write_image_missing_url_and_too_big(tmp_path: Path) -> None:
    disk = _disk(tmp_path / "disk", MiB)
    d = _double()
    with Server(d) as server:
        big = _serve_image(d, server, b"x" * 10, sha256="0" * 64, size=2 * MiB)
        missing = d.add(
            "write_image", url=f"http://127.0.0.1:{server.port}/files/nope", sha256="0" * 64
        )
        run = run_agent(tmp_path, server, disk)
    assert run.returncode == 0, run.stderr
    assert d.results[big]["ok"] is False and "larger than" in d.results[big]["error"]
    assert d.results[missing]["ok"] is False and "download failed" in d.results[missing]["error"]


def test_token_on_every_call_but_lookup_and_session_end(tmp_path: Path) -> None:
    d = _double()
    d.lookup_404s = 2  # not waiting yet: the agent retries
    d.add("inventory")
    run = session(d, tmp_path, None)
    paths = [c.path for c in d.calls]
    assert paths[:3] == ["/v1/agent/lookup"] * 3
    assert "/v1/agent/commands/c1/result" in paths
    assert paths[-1] == "/v1/agent/heartbeat"  # answered 403: the agent exits
    for c in d.calls:
        if c.path == "/v1/agent/lookup":
            assert "x-agent-token" not in c.headers
            assert c.body == {"macs": [MAC, "52:54:00:ab:cd:ef"], "boot_token": "boot-token"}
        else:
            assert c.headers["x-agent-token"] == d.agent_token, c.path
    hb = [c.body for c in d.calls if c.path == "/v1/agent/heartbeat"]
    assert hb[0] == {"node_id": "node-1", "status": "idle", "progress": 0, "message": ""}
    assert "heartbeat every 0.2s" in run.stderr


def test_lookup_409_gives_up(tmp_path: Path) -> None:
    d = _double()
    d.lookup_404s = 0
    d.lookups = 5  # the token was handed out already
    with Server(d) as server:
        run = run_agent(tmp_path, server, None)
    assert run.returncode == 1
    assert "409" in run.stderr
    assert [c.path for c in d.calls] == ["/v1/agent/lookup"]


def test_wipe_metadata_zeroes_both_ends_and_partitions(tmp_path: Path) -> None:
    size = 32 * MiB
    data = _with_mbr(bytearray(b"\xaa" * size), [_mbr_entry(4096, 16384)])  # 2 MiB + 8 MiB
    disk = tmp_path / "disk"
    disk.write_bytes(data)
    d = _double()
    cid = d.add("wipe", mode="metadata", verify=True)
    session(d, tmp_path, disk)
    r = d.results[cid]
    assert r["ok"] is True, r
    assert r["result"]["verified"] is True
    out = disk.read_bytes()
    assert len(out) == size
    zero_ranges = [(0, MiB), (size - MiB, size), (2 * MiB, 3 * MiB), (9 * MiB, 10 * MiB)]
    for a, b in zero_ranges:
        assert out[a:b] == bytes(b - a), (a, b)
    assert r["result"]["bytes"] == 4 * MiB
    assert set(out[MiB : 2 * MiB]) == {0xAA}
    assert set(out[3 * MiB : 9 * MiB]) == {0xAA}
    assert set(out[10 * MiB : size - MiB]) == {0xAA}


def test_wipe_metadata_reads_gpt_entries(tmp_path: Path) -> None:
    size = 16 * MiB
    data = bytearray(b"\xaa" * size)
    data = _with_mbr(data, [_mbr_entry(1, size // 512 - 1, 0xEE)])
    data[512:520] = b"EFI PART"
    data[512 + 72 : 512 + 88] = struct.pack("<QII", 2, 128, 128)
    entries = bytearray(128 * 128)
    entries[0:16] = b"\x01" * 16
    entries[32:48] = struct.pack("<QQ", 8192, 12287)  # 4 MiB .. 6 MiB
    data[1024 : 1024 + len(entries)] = entries
    disk = tmp_path / "disk"
    disk.write_bytes(data)
    d = _double()
    cid = d.add("wipe", mode="metadata", verify="true")
    session(d, tmp_path, disk)
    assert d.results[cid]["ok"] is True, d.results[cid]
    out = disk.read_bytes()
    assert out[4 * MiB : 6 * MiB] == bytes(2 * MiB)
    assert set(out[MiB : 4 * MiB]) == {0xAA}


def test_wipe_full_zeroes_every_byte(tmp_path: Path) -> None:
    size = 5 * MiB + 512 * 3  # not a whole number of MiB
    disk = _disk(tmp_path / "disk", size, b"\x5a")
    d = _double()
    cid = d.add("wipe", mode="full", verify=True)
    session(d, tmp_path, disk)
    r = d.results[cid]
    assert r["ok"] is True, r
    assert r["result"] == {"bytes": size, "verified": True, "mode": "full", "disk": str(disk)}
    assert disk.read_bytes() == bytes(size)


def test_inventory(tmp_path: Path) -> None:
    fake_sysfs(tmp_path, disk_model='QEMU "HARD\\DISK"\tx')
    d = _double()
    cid = d.add("inventory")
    session(d, tmp_path, None)
    r = d.results[cid]
    assert r["ok"] is True, r
    inv = r["result"]
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert inv["cpus"] == sum(line.startswith("processor") for line in cpuinfo.splitlines())
    meminfo = Path("/proc/meminfo").read_text().split()
    assert inv["memory_mb"] == int(meminfo[meminfo.index("MemTotal:") + 1]) // 1024
    assert [(x["name"], x["size_bytes"], x["removable"]) for x in inv["disks"]] == [
        ("sr0", 2048 * 512, True),
        ("vda", 20 * 1024**3, False),
        ("vdb", MiB, False),
    ]
    assert inv["disks"][1]["model"] == 'QEMU "HARD\\DISK"\tx'
    assert inv["nics"] == [
        {"name": "eth0", "mac": MAC, "link": True},
        {"name": "eth1", "mac": "52:54:00:ab:cd:ef", "link": False},
    ]
    assert inv["cpu_arch"] == os.uname().machine
    assert inv["boot_mode"] == "bios"  # the fake sysfs has no firmware/efi


def test_inventory_of_this_host(tmp_path: Path) -> None:
    d = _double()
    d.macs = {
        Path(p).joinpath("address").read_text().strip() for p in Path("/sys/class/net").iterdir()
    }
    cid = d.add("inventory")
    session(d, tmp_path, None, BMS_SYSFS="/sys")
    inv = d.results[cid]["result"]
    assert inv["cpus"] == os.cpu_count()
    assert inv["memory_mb"] > 0
    assert all(n["name"] != "lo" for n in inv["nics"])
    assert inv["boot_mode"] == ("uefi" if Path("/sys/firmware/efi").is_dir() else "bios")


def _fat_image(label: bytes, size: int) -> bytes:
    img = bytearray(size)
    img[43:54] = label.ljust(11)
    img[54:62] = b"FAT16   "
    img[510:512] = b"\x55\xaa"
    return bytes(img)


def test_write_configdrive_adds_a_partition_at_the_end(tmp_path: Path) -> None:
    size = 64 * MiB
    data = _with_mbr(bytearray(size), [_mbr_entry(2048, 20480)])
    disk = tmp_path / "disk"
    disk.write_bytes(data)
    cd = _fat_image(b"CONFIG-2", MiB + 5)
    r = _write_configdrive(tmp_path, disk, cd)
    start = (size // 512 - 4096) // 2048 * 2048
    assert r["result"] == {
        "partition": f"{disk}2",
        "number": 2,
        "start_sector": start,
        "sectors": 4096,
        "label": "CONFIG-2",
    }
    out = disk.read_bytes()
    assert len(out) == size
    assert out[446 + 16 : 462 + 16] == _mbr_entry(start, 4096)
    assert out[446:462] == _mbr_entry(2048, 20480)  # untouched
    assert out[start * 512 : start * 512 + len(cd)] == cd


def _configdrive_iso() -> bytes:
    from netboot import configdrive

    return configdrive.build(configdrive.ConfigDrive(uuid="u-1", hostname="gpt-1"))


def _gpt_disk(path: Path, image_size: int, disk_size: int, script: str) -> Path:
    """A whole-disk image with a GPT (made by the host's sfdisk) at the start of a larger
    disk: its backup GPT sits at the image's end, as after write_image."""
    path.write_bytes(bytes(image_size))
    subprocess.run(
        [host_sfdisk(), "-q", str(path)], input=f"label: gpt\n{script}", text=True, check=True
    )
    with path.open("r+b") as f:
        f.truncate(disk_size)
    return path


def _sfdisk_json(disk: Path) -> dict[str, Any]:
    out = subprocess.run([host_sfdisk(), "-J", str(disk)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    table: dict[str, Any] = json.loads(out.stdout)["partitiontable"]
    return table


def _sfdisk_verify(disk: Path) -> None:
    out = subprocess.run([host_sfdisk(), "--verify", str(disk)], capture_output=True, text=True)
    assert out.returncode == 0 and "No errors detected" in out.stdout, out.stdout + out.stderr
    assert out.stderr == "", out.stderr  # no "backup GPT table is not on the end" warning


def _write_configdrive(tmp: Path, disk: Path, image: bytes) -> dict[str, Any]:
    d = _double()
    with Server(d) as server:
        d.files["cd.iso"] = image
        cid = d.add(
            "write_configdrive",
            url=f"http://127.0.0.1:{server.port}/files/cd.iso",
            label="config-2",
        )
        run = run_agent(tmp, server, disk)
    assert run.returncode == 0, run.stderr
    r: dict[str, Any] = d.results[cid]
    assert r["ok"] is True, (r, run.stderr)
    return r


def test_write_configdrive_on_gpt_relocates_the_backup_and_appends(tmp_path: Path) -> None:
    size = 64 * MiB
    disk = _gpt_disk(
        tmp_path / "disk",
        8 * MiB,
        size,
        "start=2048, size=2048, type=U, name=esp\nstart=4096, type=L, name=root\n",
    )
    before = _sfdisk_json(disk)["partitions"]
    iso = _configdrive_iso()
    r = _write_configdrive(tmp_path, disk, iso)
    sectors = -(-len(iso) // MiB) * 2048
    last_lba = size // 512 - 34  # 128 entries of 128 bytes + the backup header
    start = (last_lba + 1 - sectors) // 2048 * 2048
    assert r["result"] == {
        "partition": f"{disk}3",
        "number": 3,
        "start_sector": start,
        "sectors": sectors,
        "label": "config-2",
    }
    _sfdisk_verify(disk)
    table = _sfdisk_json(disk)
    assert table["label"] == "gpt" and table["lastlba"] == last_lba
    parts = table["partitions"]
    assert parts[:2] == before  # untouched, uuids included
    assert parts[2]["node"] == f"{disk}3"
    assert (parts[2]["start"], parts[2]["size"]) == (start, sectors)
    assert parts[2]["type"] == "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    assert parts[2]["name"] == "config-2"
    out = disk.read_bytes()
    assert len(out) == size
    assert out[start * 512 : start * 512 + len(iso)] == iso
    assert out[start * 512 + len(iso) : (start + sectors) * 512] == bytes(sectors * 512 - len(iso))
    assert out[-512:-504] == b"EFI PART"  # the backup header, at the disk's end now
    pmbr = struct.unpack_from("<B3sB3sII", out, 446)
    assert (pmbr[2], pmbr[4], pmbr[5]) == (0xEE, 1, size // 512 - 1)
    if shutil.which("blkid"):
        probe = subprocess.run(
            ["blkid", "-p", "-O", str(start * 512), "-o", "export", str(disk)],
            capture_output=True,
            text=True,
        )
        assert "LABEL=config-2" in probe.stdout.split() and "TYPE=iso9660" in probe.stdout


def test_write_configdrive_on_gpt_beyond_2_tib(tmp_path: Path) -> None:
    """GPT has no 2 TiB limit (a sparse file: only the tables and the drive are written)."""
    size = 3 * 1024**4
    disk = _gpt_disk(tmp_path / "disk", 4 * MiB, size, "start=2048, type=L\n")
    r = _write_configdrive(tmp_path, disk, _fat_image(b"config-2", 4096))
    assert r["result"]["number"] == 2
    assert r["result"]["start_sector"] > 2**32
    _sfdisk_verify(disk)
    part = _sfdisk_json(disk)["partitions"][1]
    assert (part["start"], part["size"]) == (r["result"]["start_sector"], 2048)


def test_write_configdrive_failures(tmp_path: Path) -> None:
    def disk(name: str, data: bytes | bytearray, size: int = 8 * MiB) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        with path.open("r+b") as f:
            f.truncate(size)
        return str(path)

    mbr4 = [_mbr_entry(2048 * (i + 1), 2048) for i in range(4)]
    disks = {
        "none": disk("none", bytes(MiB)),
        "pmbr": disk("pmbr", _with_mbr(bytearray(512), [_mbr_entry(1, 16383, 0xEE)])),
        "four": disk("four", _with_mbr(bytearray(512), mbr4)),
        "mbr-full": disk("mbr-full", _with_mbr(bytearray(512), [_mbr_entry(2048, 14336)])),
        "gpt-full": str(_gpt_disk(tmp_path / "gpt-full", 8 * MiB, 8 * MiB, "start=2048\n")),
        "mbr-3tib": disk("mbr-3tib", _with_mbr(bytearray(512), [_mbr_entry(2048, 2048)]), 3 << 40),
    }
    gpt_full_before = Path(disks["gpt-full"]).read_bytes()
    d = _double()
    with Server(d) as server:
        d.files["good.img"] = _fat_image(b"config-2", 4096)
        d.files["bad.img"] = _fat_image(b"OTHER", 4096)
        base = f"http://127.0.0.1:{server.port}/files"
        cids = {
            name: d.add("write_configdrive", url=f"{base}/good.img", label="config-2", disk=path)
            for name, path in disks.items()
        }
        label = d.add("write_configdrive", url=f"{base}/bad.img", label="config-2")
        run = run_agent(tmp_path, server, tmp_path / "none")
    assert run.returncode == 0, run.stderr
    errors = {name: d.results[cid]["error"] for name, cid in cids.items()}
    assert all(d.results[cid]["ok"] is False for cid in cids.values()), errors
    assert "has no partition table" in errors["none"]
    assert "protective MBR but no valid GPT" in errors["pmbr"]
    assert "four primary partitions" in errors["four"]
    assert "no room for the config drive (2048 sectors)" in errors["mbr-full"]
    assert "no room for the config drive (2048 sectors)" in errors["gpt-full"]
    assert "beyond MBR's 2 TiB" in errors["mbr-3tib"]
    assert d.results[label]["ok"] is False and "label is 'OTHER'" in d.results[label]["error"]
    assert Path(disks["gpt-full"]).read_bytes() == gpt_full_before  # nothing to relocate
    assert Path(disks["none"]).read_bytes() == bytes(8 * MiB)


def test_write_configdrive_on_gpt_needs_sfdisk_in_path(tmp_path: Path) -> None:
    disk = _gpt_disk(tmp_path / "disk", 4 * MiB, 16 * MiB, "start=2048, type=L\n")
    before = disk.read_bytes()
    d = _double()
    with Server(d) as server:
        d.files["cd.img"] = _fat_image(b"config-2", 4096)
        cid = d.add("write_configdrive", url=f"http://127.0.0.1:{server.port}/files/cd.img")
        run = run_agent(tmp_path, server, disk, PATH=str(applet_dir(tmp_path)))
    assert run.returncode == 0, run.stderr
    assert d.results[cid]["ok"] is False
    assert "no sfdisk in PATH" in d.results[cid]["error"]
    assert disk.read_bytes() == before


def test_power_off_is_answered_before_acting(tmp_path: Path) -> None:
    d = _double()
    d.end_when_done = False
    cid = d.add("power_off")
    with Server(d) as server:
        run = run_agent(
            tmp_path,
            server,
            None,
            BMS_POWEROFF_CMD=f"wget -q -O /dev/null http://127.0.0.1:{server.port}/files/poweroff",
        )
    assert run.returncode == 0, run.stderr
    paths = [c.path for c in d.calls]
    assert d.results[cid]["ok"] is True
    assert paths.index(f"/v1/agent/commands/{cid}/result") < paths.index("/files/poweroff")
    assert paths[-1] == "/files/poweroff"


def test_unknown_command_is_reported(tmp_path: Path) -> None:
    d = _double()
    cid = d.add("format_c")
    session(d, tmp_path, None)
    assert d.results[cid] == {
        "node_id": "node-1",
        "ok": False,
        "result": {},
        "error": "unknown command 'format_c'",
    }


def test_busy_heartbeats_report_progress(tmp_path: Path) -> None:
    """A slow write: the agent heartbeats "busy" while it runs."""
    image = os.urandom(8 * MiB)
    disk = _disk(tmp_path / "disk", 16 * MiB)
    d = _double()
    d.heartbeat_interval = 0.05
    with Server(d) as server:
        # wget through a throttling shell pipe is overkill; a large-enough image and a
        # short interval are enough to see at least one busy heartbeat on 2 cores.
        cid = _serve_image(
            d, server, image, sha256=hashlib.sha256(image).hexdigest(), size=len(image)
        )
        run = run_agent(tmp_path, server, disk)
    assert run.returncode == 0, run.stderr
    assert d.results[cid]["ok"] is True
    busy = [
        c.body for c in d.calls if c.path == "/v1/agent/heartbeat" and c.body["status"] == "busy"
    ]
    for b in busy:
        assert b["message"] == "write_image" and 0 <= b["progress"] <= 99
