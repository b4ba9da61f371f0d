"""The lab's VMs: one QEMU process per machine, on a tap in the lab namespace.

A machine is a directory (``<lab>/machines/<name>/``) with ``machine.json`` (its
``Machine``), the disk, ``serial.log``, ``qmp.sock``, ``qemu.pid``, ``qemu.log`` and the
chassis state its BMC records. QEMU is started detached (it outlives ``bms lab up`` and the
BMC's ``chassis_control`` call that powers it on) and found again by pid + QMP socket path.

Boot order follows the BMC's boot device (``set_boot``): ``pxe`` (and no override) → network
then disk (``-boot order=nc``), ``disk`` → disk then network, ``cdrom`` → cd, network, disk.
QEMU reads the order at start, so a reset after the device changed restarts QEMU
(``reset``); otherwise reset is QMP ``system_reset``. iPXE's ``exit`` (the portal's answer for
an active node) falls through to the disk with ``order=nc`` (checked on SeaBIOS 1.16.2).

Boot mode (``Machine.boot_mode``): ``bios`` runs SeaBIOS, ``uefi`` runs OVMF (``-bios
OVMF.fd``: variables live in RAM only; nothing to keep per machine, since the boot order
comes from QEMU at every start). OVMF ignores ``-boot order=``: it orders its boot options
by the ``bootindex=`` of the NIC and the disk (``bootindex``), derived from the same order
string; its own network boot options are switched off (``OVMF_NO_NETWORK_STACK``) so that
the NIC's only boot option is iPXE's. The e1000's option ROM (ipxe-qemu's efi-e1000.rom)
carries iPXE for both firmwares, so neither needs a TFTP chainload; iPXE's ``exit`` hands
back to the firmware, which tries the next boot option (the disk) on both. A blank disk's
marker boot sector only runs under BIOS: OVMF logs that the disk's boot option failed to
load and ends in its EFI shell.

Serial: appended to ``serial.log`` across power cycles. SeaBIOS mirrors its console (and
iPXE's output) to COM1 when fw_cfg ``etc/sercon-port`` is 0x3f8; OVMF's console is COM1
already. Either way the serial log shows firmware, iPXE and the OS.
A new disk gets a boot sector that prints ``BMSLAB <name>: no OS on disk`` to COM1 and halts:
falling through to a blank disk is visible in the log (writing an image replaces it).

Acceleration: TCG by default. ``/dev/kvm`` here is a nested "kvm-pvm" device on which real
mode runs but Linux guests triple-fault or hang (LAB-NOTES), so no quick probe can vouch for
it: ``kvm`` only on request.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from netboot.lab.procs import alive, kill, poll_until, spawn

QEMU = "qemu-system-x86_64"
BOOT_ORDERS = {
    "pxe": "nc",
    "none": "nc",
    "default": "cn",
    "disk": "cn",
    "cdrom": "dnc",
    "bios": "nc",
}
SERCON_PORT = (0x3F8).to_bytes(2, "little")
BOOT_MODES = ("bios", "uefi")
OVMF = "/usr/share/ovmf/OVMF.fd"
# OVMF's own IPv4/IPv6 stacks off: iPXE (the NIC's ROM) has its own. Otherwise the NIC's
# bootindex also selects OVMF's PXEv4, PXEv6, HTTPv4 and HTTPv6 boot options, which run
# after iPXE's ``exit`` and wait minutes for DHCP offers before the disk gets its turn.
OVMF_NO_NETWORK_STACK = (
    "-fw_cfg", "name=opt/org.tianocore/IPv4Support,string=no",
    "-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no",
)  # fmt: skip


@dataclass(frozen=True)
class Machine:
    name: str
    mac: str
    tap: str
    namespace: str
    workdir: str
    cpus: int = 1
    memory_mb: int = 512
    disk_mib: int = 1024
    accel: str = "tcg"
    qemu: str = QEMU
    ip: str = "ip"
    boot_mode: str = "bios"
    ovmf: str = OVMF

    @property
    def dir(self) -> Path:
        return Path(self.workdir)

    @property
    def disk(self) -> Path:
        return self.dir / "disk.img"

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def qmp_path(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def pid_path(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def chassis_dir(self) -> Path:
        return self.dir / "chassis"

    @property
    def local_gb(self) -> int:
        return self.disk_mib // 1024

    def save(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "machine.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Machine:
        return cls(**json.loads(Path(path).read_text()))


def mac_for(index: int, prefix: str = "52:54:00:b5") -> str:
    """A fixed, locally administered MAC per machine index: ``52:54:00:b5:00:<index>``."""
    if not 0 <= index < 65536:
        raise ValueError("machine index out of range")
    return f"{prefix}:{index >> 8:02x}:{index & 0xFF:02x}"


def marker_boot_sector(text: str) -> bytes:
    """A 512-byte MBR that writes ``text`` + CRLF to COM1 (0x3f8) and halts."""
    msg = text.encode("ascii") + b"\r\n\0"
    # cli; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
    # next: lodsb; test al,al; jz halt; out dx,al; jmp next
    # halt: hlt; jmp halt
    code = bytes.fromhex("fa31c08ed8be167cbaf803ac84c07403eeebf8f4ebfd")
    sector = code + msg
    if len(sector) > 510:
        raise ValueError("marker text too long")
    return sector.ljust(510, b"\0") + b"\x55\xaa"


def create_disk(machine: Machine) -> None:
    """A sparse raw disk with the marker boot sector; kept if it exists."""
    if machine.disk.exists():
        return
    with open(machine.disk, "wb") as f:
        f.write(marker_boot_sector(f"BMSLAB {machine.name}: no OS on disk"))
        f.truncate(machine.disk_mib * 1024 * 1024)


def bootindex(boot_order: str) -> dict[str, int]:
    """``-boot order=`` letters as ``bootindex`` values: ``"nc"`` → ``{"n": 1, "c": 2}``."""
    return {letter: i + 1 for i, letter in enumerate(boot_order)}


def _firmware_args(machine: Machine, boot_order: str) -> list[str]:
    """Firmware, NIC and disk: SeaBIOS follows ``-boot order``, OVMF the devices'
    ``bootindex`` (a device without one, e.g. the disk for ``order=n``, comes last)."""
    nic = f"e1000,netdev=n0,mac={machine.mac}"
    if machine.boot_mode == "bios":
        sercon = machine.dir / "sercon-port.bin"
        return [
            "-boot", f"order={boot_order}",
            "-device", nic,
            "-drive", f"file={machine.disk},format=raw,if=virtio",
            "-fw_cfg", f"name=etc/sercon-port,file={sercon}",
        ]  # fmt: skip
    index = bootindex(boot_order)
    disk = "virtio-blk-pci,drive=disk0"
    return [
        "-bios", machine.ovmf,
        *OVMF_NO_NETWORK_STACK,
        "-device", nic + (f",bootindex={index['n']}" if "n" in index else ""),
        "-drive", f"file={machine.disk},format=raw,if=none,id=disk0",
        "-device", disk + (f",bootindex={index['c']}" if "c" in index else ""),
    ]  # fmt: skip


def qemu_argv(machine: Machine, boot_order: str) -> list[str]:
    if machine.boot_mode not in BOOT_MODES:
        raise ValueError(f"boot_mode must be one of {', '.join(BOOT_MODES)}")
    accel = "kvm" if machine.accel == "kvm" else "tcg"
    return [
        machine.ip, "netns", "exec", machine.namespace,  # execs QEMU: same pid
        machine.qemu,
        "-name", f"{machine.name},process=bmslab-{machine.name}",
        "-accel", accel,
        "-m", str(machine.memory_mb),
        "-smp", str(machine.cpus),
        *_firmware_args(machine, boot_order),
        "-netdev", f"tap,id=n0,ifname={machine.tap},script=no,downscript=no",
        "-display", "none", "-vga", "none",
        "-chardev", f"file,id=com1,path={machine.serial_log},append=on",
        "-serial", "chardev:com1",
        "-qmp", f"unix:{machine.qmp_path},server=on,wait=off",
    ]  # fmt: skip


def pid(machine: Machine) -> int | None:
    try:
        return int(machine.pid_path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running_order(machine: Machine) -> str | None:
    """The boot order the running QEMU was started with (None: not running)."""
    p = pid(machine)
    if not alive(p, str(machine.qmp_path)):
        return None
    try:
        return machine.pid_path.read_text().split()[1]
    except (OSError, IndexError):
        return None


def is_running(machine: Machine) -> bool:
    return running_order(machine) is not None


def start(machine: Machine, boot_device: str | None = None) -> int:
    """Power on: start QEMU detached (returns at once); a no-op if it runs."""
    order = BOOT_ORDERS.get(boot_device or "none", "nc")
    p = pid(machine)
    if alive(p, str(machine.qmp_path)) and p is not None:
        return p
    create_disk(machine)
    if machine.boot_mode == "bios":
        (machine.dir / "sercon-port.bin").write_bytes(SERCON_PORT)
    machine.qmp_path.unlink(missing_ok=True)
    qpid = spawn(qemu_argv(machine, order), log_path=machine.dir / "qemu.log", cwd=machine.dir)
    tmp = machine.pid_path.with_suffix(".tmp")
    tmp.write_text(f"{qpid} {order}\n")
    os.replace(tmp, machine.pid_path)
    return qpid


def qmp(machine: Machine, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """One QMP command over the machine's socket; the reply (``{"return": ...}``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(machine.qmp_path))
        stream = sock.makefile("rw", encoding="utf-8")
        json.loads(stream.readline())  # greeting
        for cmd in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": cmd}) + "\n")
            stream.flush()
            while True:  # skip asynchronous events
                reply: dict[str, Any] = json.loads(stream.readline())
                if "return" in reply or "error" in reply:
                    break
        return reply


def wait_qmp(machine: Machine, timeout: float = 10.0) -> None:
    def ready() -> bool:
        if not is_running(machine):
            raise RuntimeError(f"QEMU for {machine.name} exited: {qemu_log_tail(machine)}")
        try:
            return "return" in qmp(machine, "query-status", timeout=1.0)
        except OSError:
            return False

    poll_until(ready, timeout=timeout, what=f"QMP of {machine.name}")


def stop(machine: Machine, timeout: float = 10.0) -> None:
    """Power off (hard): QMP ``quit``, SIGKILL if that fails; returns once QEMU is gone."""
    p = pid(machine)
    marker = str(machine.qmp_path)
    if alive(p, marker):
        with contextlib.suppress(OSError, ValueError):
            qmp(machine, "quit", timeout=2.0)
        with contextlib.suppress(TimeoutError):
            poll_until(lambda: not alive(p, marker), timeout=3.0, what="QEMU quit")
        kill(p, marker, timeout=timeout)
    machine.pid_path.unlink(missing_ok=True)


def reset(machine: Machine, boot_device: str | None = None) -> None:
    """Hard reset; a QEMU started with another boot order is restarted with the new one."""
    order = BOOT_ORDERS.get(boot_device or "none", "nc")
    current = running_order(machine)
    if current is None:
        return  # IPMI: reset of a powered-off chassis does nothing
    if current == order:
        with contextlib.suppress(OSError, ValueError):
            if "return" in qmp(machine, "system_reset"):
                return
    stop(machine)
    start(machine, boot_device)


def soft_off(machine: Machine) -> None:
    """ACPI power button: the OS decides (firmware and iPXE ignore it)."""
    if is_running(machine):
        with contextlib.suppress(OSError, ValueError):
            qmp(machine, "system_powerdown")


def qemu_log_tail(machine: Machine, limit: int = 2000) -> str:
    try:
        return (machine.dir / "qemu.log").read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def qemu_binary() -> str | None:
    return shutil.which(QEMU)
