"""The ``agent`` deploy interface: disk work done by the deploy agent in the ramdisk.

A step never waits for the agent: it leaves a command in ``task.internal["agent_command"]``
and answers "wait"; the job ends, the agent picks the command up with its next heartbeat
(``netboot.agent``), and its result resumes the plan, which checks it first
(``workers.runner``). Images are written raw: the agent only streams and hashes bytes.
"""

from __future__ import annotations

import uuid
from typing import Any

from portal.core.imageformat import DISK_FORMATS
from workers.drivers.base import (
    DriverError,
    ErrorKind,
    Inventory,
    NodeTask,
    StepResult,
    check_image_fields,
)

WIPE_MODES = ("metadata", "full")
# driver_info.inspect_mode: "bmc" asks the BMC (out-of-band, the driver's inspect
# interface); "agent" netboots the deploy ramdisk and takes its inventory (in-band).
INSPECT_MODES = ("bmc", "agent")
GIB = 1024**3


def command(task: NodeTask, name: str, args: dict[str, Any]) -> StepResult:
    task.internal["agent_command"] = {"id": str(uuid.uuid4()), "name": name, "args": args}
    return "wait"


class AgentDeploy:
    image_formats: tuple[str, ...] = (
        "raw",
    )  # the agent streams bytes to disk: qcow2 is converted first

    def validate(self, task: NodeTask) -> None:
        if not any(p.get("pxe_enabled", True) for p in task.ports):
            raise DriverError(
                "the node needs a port with pxe_enabled to netboot the deploy ramdisk",
                ErrorKind.INVALID,
            )
        mode = task.driver_info.get("cleaning_mode", "metadata")
        if mode not in WIPE_MODES:
            raise DriverError(
                f"driver_info.cleaning_mode must be one of {', '.join(WIPE_MODES)}",
                ErrorKind.INVALID,
            )
        check_image_fields(task)
        # raw is written as it is, qcow2 as its raw copy (prepare_image)
        if task.instance.get("image_disk_format") not in (*DISK_FORMATS, None):
            raise DriverError(
                f"image format {task.instance.get('image_disk_format')!r} cannot be deployed: "
                f"allowed {', '.join(DISK_FORMATS)}",
                ErrorKind.UNSUPPORTED,
            )

    def write_image(self, task: NodeTask) -> StepResult:
        self.validate(task)
        # What prepare_image chose (the raw copy of a qcow2 image), if it ran for this image.
        chosen = task.internal.get("image_write") or {}
        if chosen.get("image_id") != task.instance.get("image_id"):
            chosen = {}
        if not chosen and task.instance.get("image_disk_format") not in (*self.image_formats, None):
            raise DriverError(
                "the image has no raw copy: the deploy's prepare_image step did not run"
            )
        return command(
            task,
            "write_image",
            {
                "url": f"{task.instance['agent_image_url']}?node_id={task.node_id}",
                "sha256": chosen.get("sha256") or task.instance["image_sha256"],
                "size": chosen.get("size") or task.instance.get("image_size"),
            },
        )

    def write_configdrive(self, task: NodeTask) -> StepResult:
        return command(
            task,
            "write_configdrive",
            {
                "url": f"{task.instance['agent_configdrive_url']}?node_id={task.node_id}",
                "label": "config-2",
            },
        )

    def wipe_disks(self, task: NodeTask) -> StepResult:
        mode = task.driver_info.get("cleaning_mode", "metadata")
        return command(task, "wipe", {"mode": mode, "verify": True})


def inspect_mode(task: NodeTask) -> str:
    mode = str(task.driver_info.get("inspect_mode", "bmc"))
    if mode not in INSPECT_MODES:
        raise DriverError(
            f"driver_info.inspect_mode must be one of {', '.join(INSPECT_MODES)}",
            ErrorKind.INVALID,
        )
    if mode == "agent" and not any(p.get("pxe_enabled", True) for p in task.ports):
        raise DriverError(
            "in-band inspection netboots the deploy ramdisk: the node needs a port with "
            "pxe_enabled (enroll its PXE NIC's MAC)",
            ErrorKind.INVALID,
        )
    return mode


def collect_inventory(task: NodeTask) -> StepResult:
    return command(task, "inventory", {})


def inventory_from_agent(found: dict[str, Any]) -> Inventory:
    """The agent's ``inventory`` result as what inspection applies: cpus, RAM, the root
    disk's size (the disk ``write_image`` writes by default: the first fixed one, by name),
    the CPU architecture, the firmware's boot mode, and every NIC's MAC."""
    props: dict[str, Any] = {}
    if isinstance(found.get("cpus"), int) and found["cpus"] > 0:
        props["cpus"] = found["cpus"]
    if isinstance(found.get("memory_mb"), int) and found["memory_mb"] > 0:
        props["memory_mb"] = found["memory_mb"]
    if found.get("cpu_arch"):
        props["cpu_arch"] = str(found["cpu_arch"])
    disks = sorted(
        (d for d in found.get("disks") or [] if not d.get("removable") and d.get("size_bytes")),
        key=lambda d: str(d.get("name")),
    )
    if disks and isinstance(disks[0].get("size_bytes"), int):
        props["local_gb"] = disks[0]["size_bytes"] // GIB
    caps = {}
    if found.get("boot_mode") in ("uefi", "bios"):
        caps["boot_mode"] = str(found["boot_mode"])
    macs = sorted({str(n["mac"]).lower() for n in found.get("nics") or [] if n.get("mac")})
    return Inventory(properties=props, capabilities=caps, macs=macs, raw={"agent": found})
