"""Deploy, clean and tear-down plans, declared as ordered tables of steps.

A step calls driver interfaces and returns "done" or "wait". "wait" means an agent
will call back later: the job ends, the node moves to a wait state, and the callback
enqueues a job that resumes the plan at the next step. No worker is held while waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from netboot import artefacts, tokens
from netboot.render import BootTarget
from portal.core.imagestore import ImageStore
from portal.core.states import POWER_OFF, POWER_ON
from workers import imageconvert
from workers.drivers import agent
from workers.drivers.base import Driver, NodeTask, StepResult


class PortFlipper(Protocol):
    """Moves a node's switch ports between networks (workers/networking): each call is
    idempotent and returns once the switches carry the change."""

    def to_provisioning(self, task: NodeTask) -> None: ...
    def to_tenant(self, task: NodeTask) -> None: ...


@dataclass(frozen=True)
class StepEnv:
    driver: Driver
    networks: PortFlipper
    netboot_root: Path
    public_url: str
    images: ImageStore
    convert_timeout: float = 3600.0


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[NodeTask, StepEnv], StepResult | None]
    power_after: str | None = None  # the power state the node is in once the step is done


def _power(state: str) -> Callable[[NodeTask, StepEnv], None]:
    def run(task: NodeTask, env: StepEnv) -> None:
        env.driver.power.set_power_state(task, state)

    return run


def _boot_device(device: str) -> Callable[[NodeTask, StepEnv], None]:
    def run(task: NodeTask, env: StepEnv) -> None:
        env.driver.management.set_boot_device(task, device, persistent=device == "disk")

    return run


def _prepare_image(task: NodeTask, env: StepEnv) -> None:
    """What the deploy interface writes: the image itself if it takes the image's format,
    else its raw copy (converted once, in this worker, before the node is powered on)."""
    fmt = task.instance.get("image_disk_format") or "raw"
    image_id = task.instance.get("image_id")
    if fmt in env.driver.deploy.image_formats or not image_id:
        task.internal["image_write"] = {
            "image_id": image_id,
            "format": fmt,
            "sha256": task.instance.get("image_sha256"),
            "size": task.instance.get("image_size"),
        }
        return
    raw = imageconvert.ensure_raw(env.images, image_id, fmt, env.convert_timeout)
    task.internal["image_write"] = {
        "image_id": image_id,
        "format": imageconvert.RAW,
        "converted_from": fmt,
        "sha256": raw.sha256,
        "size": raw.size,
    }


def _prepare_netboot(task: NodeTask, env: StepEnv) -> None:
    """A fresh boot token for this operation: the node's boot script URL, which the deploy
    ramdisk also shows the portal at lookup. Only its hash is kept."""
    token = tokens.new_token()
    task.internal["boot_token_hash"] = tokens.digest(token)
    base = f"{env.public_url}/v1/boot/artefacts"
    target = BootTarget(
        kind="ramdisk",
        kernel_url=f"{base}/deploy.kernel",
        ramdisk_url=f"{base}/deploy.initramfs",
        kernel_params=f"bms_api={env.public_url} bms_boot={token} console=tty0 console=ttyS0",
    )
    macs = [p["address"] for p in task.ports if p.get("pxe_enabled", True)]
    artefacts.prepare(
        env.netboot_root, task.node_id, macs, target, token, f"{env.public_url}/v1/boot"
    )


def _clean_up_netboot(task: NodeTask, env: StepEnv) -> None:
    """The node boots from its disk from now on, and the operation's tokens die."""
    forget_netboot(task.internal)
    artefacts.clean_up(env.netboot_root, task.node_id)


def forget_netboot(internal: dict[str, object]) -> None:
    internal.pop("boot_token_hash", None)
    internal.pop("agent_command", None)
    internal.pop("image_write", None)


def _provisioning_network(task: NodeTask, env: StepEnv) -> None:
    env.networks.to_provisioning(task)


def _tenant_networks(task: NodeTask, env: StepEnv) -> None:
    env.networks.to_tenant(task)


# The node's switch ports sit on the provisioning network whenever the deploy ramdisk runs,
# and move to the tenant's networks only while the node is powered off, after the ramdisk
# and before the first boot from disk (power off -> flip -> power on): a tenant's server
# never sees the provisioning network, and the ramdisk never sees a tenant's.
DEPLOY: tuple[Step, ...] = (
    Step("prepare_image", _prepare_image),
    Step("power_off", _power(POWER_OFF), POWER_OFF),
    Step("provisioning_network", _provisioning_network),
    Step("set_boot_pxe", _boot_device("pxe")),
    Step("prepare_netboot", _prepare_netboot),
    Step("power_on", _power(POWER_ON), POWER_ON),
    Step("write_image", lambda t, e: e.driver.deploy.write_image(t)),
    Step("write_configdrive", lambda t, e: e.driver.deploy.write_configdrive(t)),
    Step("power_off_ramdisk", _power(POWER_OFF), POWER_OFF),
    Step("set_boot_disk", _boot_device("disk")),
    Step("clean_up_netboot", _clean_up_netboot),
    Step("tenant_networks", _tenant_networks),
    Step("power_on_instance", _power(POWER_ON), POWER_ON),
)

TEARDOWN: tuple[Step, ...] = (
    Step("power_off", _power(POWER_OFF), POWER_OFF),
    Step("provisioning_network", _provisioning_network),
)

CLEAN: tuple[Step, ...] = (
    Step("power_off", _power(POWER_OFF), POWER_OFF),
    Step("provisioning_network", _provisioning_network),
    Step("set_boot_pxe", _boot_device("pxe")),
    Step("prepare_netboot", _prepare_netboot),
    Step("power_on", _power(POWER_ON), POWER_ON),
    Step("wipe_disks", lambda t, e: e.driver.deploy.wipe_disks(t)),
    Step("power_off_after_wipe", _power(POWER_OFF), POWER_OFF),
    Step("clean_up_netboot", _clean_up_netboot),
)

# In-band inspection: the deploy ramdisk's agent reports the hardware it sees.
INSPECT: tuple[Step, ...] = (
    Step("power_off", _power(POWER_OFF), POWER_OFF),
    Step("provisioning_network", _provisioning_network),
    Step("set_boot_pxe", _boot_device("pxe")),
    Step("prepare_netboot", _prepare_netboot),
    Step("power_on", _power(POWER_ON), POWER_ON),
    Step("collect_inventory", lambda t, e: agent.collect_inventory(t)),
    Step("power_off_after_inventory", _power(POWER_OFF), POWER_OFF),
    Step("clean_up_netboot", _clean_up_netboot),
)

PLANS: dict[str, tuple[Step, ...]] = {
    "deploy": DEPLOY,
    "teardown": TEARDOWN,
    "clean": CLEAN,
    "inspect": INSPECT,
}
