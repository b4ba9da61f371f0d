"""Run netboot/ramdisk/agent.sh under the host's busybox, with busybox applets and the host's
sfdisk (as in the ramdisk) only on PATH."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netboot.protocol_double import PortalDouble, Server

AGENT = Path(__file__).resolve().parents[2] / "netboot" / "ramdisk" / "agent.sh"
MAC = "52:54:00:12:34:56"


def busybox() -> str:
    path = shutil.which("busybox")
    if path is None:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    return path


def applet_dir(root: Path) -> Path:
    """A PATH directory where every command is a busybox applet, as in the ramdisk."""
    bb = busybox()
    d = root / "bin"
    if not d.exists():
        d.mkdir()
        out = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout
        for name in out.split():
            (d / name).symlink_to(bb)
    return d


def host_sfdisk() -> str:
    path = shutil.which("sfdisk", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.skip("sfdisk is not installed (apt-get install fdisk)")
    return path


def tool_path(root: Path) -> str:
    """PATH for the agent: busybox applets, then sfdisk if the host has it."""
    tools = root / "tools"
    if not tools.exists():
        tools.mkdir()
        sfdisk = shutil.which("sfdisk", path="/usr/sbin:/sbin:/usr/bin:/bin")
        if sfdisk is not None:
            (tools / "sfdisk").symlink_to(sfdisk)
    return f"{applet_dir(root)}:{tools}"


def fake_sysfs(root: Path, disk_model: str = "QEMU HARDDISK") -> Path:
    sys = root / "sys"
    for name, mac, carrier in (("eth0", MAC, "1"), ("eth1", "52:54:00:AB:CD:EF", "0")):
        d = sys / "class" / "net" / name
        (d / "device").mkdir(parents=True)
        (d / "address").write_text(mac + "\n")
        (d / "carrier").write_text(carrier + "\n")
    lo = sys / "class" / "net" / "lo"
    lo.mkdir(parents=True)
    (lo / "address").write_text("00:00:00:00:00:00\n")
    for name, sectors, removable, has_device in (
        ("loop0", 100, "0", False),
        ("sr0", 2048, "1", True),
        ("vda", 41943040, "0", True),
        ("vdb", 2048, "0", True),
    ):
        d = sys / "block" / name
        (d / "queue").mkdir(parents=True)
        (d / "size").write_text(f"{sectors}\n")
        (d / "removable").write_text(removable + "\n")
        (d / "queue" / "rotational").write_text("1\n")
        if has_device:
            (d / "device").mkdir()
            (d / "device" / "model").write_text(disk_model + "  \n")
    return sys


@dataclass
class AgentRun:
    returncode: int
    stderr: str


def run_agent(
    tmp: Path,
    server: Server,
    disk: Path | None,
    timeout: float = 60.0,
    **env: str,
) -> AgentRun:
    state = tmp / "state"
    e = {
        "PATH": tool_path(tmp),
        "BMS_API": f"http://127.0.0.1:{server.port}/",
        "BMS_BOOT_TOKEN": "boot-token",
        "BMS_SYSFS": str(tmp / "sys") if (tmp / "sys").exists() else str(fake_sysfs(tmp)),
        "BMS_PROC": "/proc",
        "BMS_STATE": str(state),
        "BMS_RETRY_INTERVAL": "0.1",
        "BMS_LOOKUP_TRIES": "20",
        "BMS_POWEROFF_CMD": "true",
        "BMS_REBOOT_CMD": "true",
    }
    if disk is not None:
        e["BMS_DISK"] = str(disk)
    e.update(env)
    p = subprocess.run(
        [busybox(), "sh", str(AGENT)],
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return AgentRun(p.returncode, p.stderr)


def session(double: PortalDouble, tmp: Path, disk: Path | None, **env: str) -> AgentRun:
    with Server(double) as server:
        run = run_agent(tmp, server, disk, 60.0, **env)
    assert run.returncode == 0, run.stderr
    assert double.done, run.stderr
    return run
