"""The ``fake`` hardware type: every step succeeds after ``fake_delay`` seconds.

Failure injection for tests and demos, via ``driver_info``:
- ``fake_fail``: a step name ("power", "set_boot_device", "write_image", "wipe_disks",
  "validate", "sensors", "inspect") that raises a :class:`DriverError`;
- ``fake_delay``: seconds each step sleeps (default 0);
- ``fake_async``: true makes ``write_image`` and ``wipe_disks`` answer "wait", as an agent
  deploy does: the job ends and the plan resumes when ``continue_deploy`` / ``continue_clean``
  is enqueued (what the agent's callback does).
Power and boot device are kept in ``task.internal`` so they persist like real hardware.
"""

from __future__ import annotations

import time
from typing import Any

from portal.core.states import POWER_OFF, POWER_ON, SOFT_POWER_OFF
from workers.drivers.base import (
    Driver,
    DriverError,
    Inventory,
    NodeTask,
    StepResult,
    check_image_fields,
)

FAKE_FIELDS = ("fake_fail", "fake_delay", "fake_async", "fake_inventory")


def _step(task: NodeTask, name: str) -> None:
    delay = float(task.driver_info.get("fake_delay") or 0)
    if delay:
        time.sleep(delay)
    if task.driver_info.get("fake_fail") == name:
        raise DriverError(f"fake failure injected in step '{name}'")


def _validate(task: NodeTask) -> None:
    if task.driver_info.get("fake_fail") == "validate":
        raise DriverError("fake failure injected in step 'validate'")
    try:
        float(task.driver_info.get("fake_delay") or 0)
    except (TypeError, ValueError):
        raise DriverError("driver_info.fake_delay must be a number of seconds") from None


class FakePower:
    def validate(self, task: NodeTask) -> None:
        _validate(task)

    def get_power_state(self, task: NodeTask) -> str:
        _step(task, "power")
        return str(task.internal.get("fake_power", POWER_OFF))

    def set_power_state(self, task: NodeTask, state: str) -> None:
        _step(task, "power")
        task.internal["fake_power"] = POWER_OFF if state == SOFT_POWER_OFF else state

    def reboot(self, task: NodeTask) -> None:
        _step(task, "power")
        task.internal["fake_power"] = POWER_ON


class FakeManagement:
    def validate(self, task: NodeTask) -> None:
        _validate(task)

    def set_boot_device(self, task: NodeTask, device: str, persistent: bool = False) -> None:
        _step(task, "set_boot_device")
        task.internal["fake_boot_device"] = device

    def get_boot_device(self, task: NodeTask) -> str | None:
        return task.internal.get("fake_boot_device")

    def get_sensors(self, task: NodeTask) -> list[dict[str, Any]]:
        _step(task, "sensors")
        on = task.internal.get("fake_power") == POWER_ON
        return [
            {
                "name": "CPU Temp",
                "type": "temperature",
                "value": 48.0 if on else 22.0,
                "units": "°C",
                "health": "ok",
                "states": [],
            },
            {
                "name": "Fan 1",
                "type": "fan",
                "value": 5400.0 if on else 0.0,
                "units": "RPM",
                "health": "ok",
                "states": [],
            },
            {
                "name": "Power Consumption",
                "type": "power",
                "value": 180.0 if on else 8.0,
                "units": "W",
                "health": "ok",
                "states": [],
            },
        ]


class FakeDeploy:
    image_formats: tuple[str, ...] = ("raw", "qcow2")  # it writes nothing: no conversion needed

    def validate(self, task: NodeTask) -> None:
        _validate(task)
        check_image_fields(task)

    def write_image(self, task: NodeTask) -> StepResult:
        _step(task, "write_image")
        task.internal["fake_disk"] = task.instance.get("image_sha256")
        return "wait" if task.driver_info.get("fake_async") else "done"

    def write_configdrive(self, task: NodeTask) -> StepResult:
        _step(task, "write_configdrive")
        task.internal["fake_configdrive"] = task.instance.get("instance_id")
        return "done"

    def wipe_disks(self, task: NodeTask) -> StepResult:
        _step(task, "wipe_disks")
        task.internal.pop("fake_disk", None)
        task.internal.pop("fake_configdrive", None)
        return "wait" if task.driver_info.get("fake_async") else "done"


class FakeInspect:
    """Reports ``driver_info.fake_inventory`` (properties, capabilities, macs) if given,
    else the node's own properties and ports: inspection that changes nothing."""

    def validate(self, task: NodeTask) -> None:
        _validate(task)
        inv = task.driver_info.get("fake_inventory")
        if inv is not None and not isinstance(inv, dict):
            raise DriverError("driver_info.fake_inventory must be an object")

    def inspect_hardware(self, task: NodeTask) -> Inventory:
        _step(task, "inspect")
        given = task.driver_info.get("fake_inventory") or {}
        inv = Inventory(
            properties=dict(given.get("properties", task.properties)),
            capabilities=dict(given.get("capabilities", {})),
            macs=list(given.get("macs", [p["address"] for p in task.ports])),
        )
        inv.raw = {"fake": True, "properties": inv.properties, "macs": inv.macs}
        return inv


def fake_driver() -> Driver:
    return Driver("fake", FakePower(), FakeManagement(), FakeDeploy(), FakeInspect())


def fake_agent_driver() -> Driver:
    """Simulated BMC, real agent protocol: disk work is handed to a deploy agent (for tests
    of the protocol and for trying it without a BMC)."""
    from workers.drivers.agent import AgentDeploy

    return Driver("fake-agent", FakePower(), FakeManagement(), AgentDeploy(), FakeInspect())
