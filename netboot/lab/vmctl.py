"""A BMC's ``chassis_control`` program: ipmi_sim's power/boot requests acted out on a VM.

``ipmi_sim`` runs ``chassis_control.sh`` (which execs ``python -m netboot.lab.vmctl
<machine.json> ARGS``) synchronously for every chassis request, as:

- ``get power`` → prints ``power:1`` while the machine's QEMU runs, else ``power:0``;
- ``set power 1`` / ``set power 0`` → start QEMU (detached, returns at once) / stop it;
- ``set reset 1`` → reset (restarts QEMU when the boot device changed since it started);
- ``set shutdown 1`` → ACPI power button;
- ``set boot pxe|default|cdrom|bios|none`` → recorded in ``chassis/boot``, used by the next
  power on or reset (``default`` is IPMI's "force boot from default hard drive"). IPMI's
  "EFI boot" flag (set for ``boot_mode: uefi`` nodes) is accepted by ipmi_sim but not
  passed on: the machine's firmware is its ``Machine.boot_mode``;
- ``get boot`` → ``boot:<recorded>``.

Every call is appended to ``chassis/calls.log``. Stdlib only, so the call stays fast.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from netboot.lab import machines
from netboot.lab.machines import Machine


def _boot_device(machine: Machine) -> str:
    try:
        return (machine.chassis_dir / "boot").read_text().strip() or "none"
    except FileNotFoundError:
        return "none"


def _record(machine: Machine, name: str, value: str) -> None:
    tmp = machine.chassis_dir / f".{name}.tmp"
    tmp.write_text(value + "\n")
    os.replace(tmp, machine.chassis_dir / name)


# A machine whose VM was taken out of the chassis while its BMC stays (``bms lab`` tests:
# a node that never netboots): the BMC accepts power requests, nothing boots.
REMOVED = "removed"


def _removed(machine: Machine, verb: str, item: str, value: str) -> str:
    if (verb, item) == ("get", "power"):
        return f"power:{_boot_state(machine)}"
    if (verb, item) == ("get", "boot"):
        return f"boot:{_boot_device(machine)}"
    if (verb, item) == ("set", "power"):
        _record(machine, "power-removed", "1" if value == "1" else "0")
    elif (verb, item) == ("set", "boot"):
        _record(machine, "boot", value or "none")
    return ""


def _boot_state(machine: Machine) -> str:
    try:
        return (machine.chassis_dir / "power-removed").read_text().strip() or "0"
    except FileNotFoundError:
        return "0"


def handle(machine: Machine, args: list[str]) -> str:
    """Act on one chassis_control request; what to print."""
    machine.chassis_dir.mkdir(parents=True, exist_ok=True)
    with open(machine.chassis_dir / "calls.log", "a") as log:
        log.write(f"{time.time():.3f} {' '.join(args)}\n")
    verb, item, value = (*args, "", "", "")[:3]
    if (machine.dir / REMOVED).exists():
        return _removed(machine, verb, item, value)
    if (verb, item) == ("get", "power"):
        return f"power:{int(machines.is_running(machine))}"
    if (verb, item) == ("get", "boot"):
        return f"boot:{_boot_device(machine)}"
    if (verb, item) == ("set", "boot"):
        _record(machine, "boot", value or "none")
    elif (verb, item, value) == ("set", "power", "1"):
        machines.start(machine, _boot_device(machine))
    elif (verb, item, value) == ("set", "power", "0"):
        machines.stop(machine)
    elif (verb, item) == ("set", "reset") and value != "0":
        machines.reset(machine, _boot_device(machine))
    elif (verb, item) == ("set", "shutdown") and value != "0":
        machines.soft_off(machine)
    return ""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(
            "usage: python -m netboot.lab.vmctl MACHINE_JSON get|set ITEM [VALUE]", file=sys.stderr
        )
        return 2
    out = handle(Machine.load(Path(args[0])), args[1:])
    if out:
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
