"""The ``agent`` deploy interface: disk work done by the deploy agent in the ramdisk.

A step never waits for the agent: it leaves a command in ``task.internal["agent_command"]``
and answers "wait"; the job ends, the agent picks the command up with its next heartbeat
(``netboot.agent``), and its result resumes the plan, which checks it first
(``workers.runner``). Images are written raw: the agent only streams and hashes bytes.
"""

from __future__ import annotations

import uuid
from typing import Any

from workers.drivers.base import (
    DriverError,
    ErrorKind,
    NodeTask,
    StepResult,
    check_image_fields,
)

WIPE_MODES = ("metadata", "full")
CONVERTIBLE = ("raw", "qcow2")  # raw is written as is, qcow2 as its raw copy


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
        if task.instance.get("image_disk_format") not in (*CONVERTIBLE, None):
            raise DriverError(
                f"image format {task.instance.get('image_disk_format')!r} cannot be deployed: "
                f"allowed {', '.join(CONVERTIBLE)}",
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
