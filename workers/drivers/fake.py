"""The ``fake`` hardware type: every step succeeds after ``fake_delay`` seconds.

Failure injection for tests and demos, via ``driver_info``:
- ``fake_fail``: a step name ("power", "set_boot_device", "write_image", "wipe_disks",
  "attach", "detach", "validate") that raises a :class:`DriverError`;
- ``fake_delay``: seconds each step sleeps (default 0);
- ``fake_async``: true makes ``write_image`` and ``wipe_disks`` answer "wait", as an agent
  deploy does: the job ends and the plan resumes when ``continue_deploy`` / ``continue_clean``
  is enqueued (what the agent's callback does).
Power and boot device are kept in ``task.internal`` so they persist like real hardware.
"""

from __future__ import annotations

import time

from portal.core.states import POWER_OFF, POWER_ON
from workers.drivers.base import (
    Driver,
    DriverError,
    NodeTask,
    StepResult,
    register_driver,
)

FAKE_FIELDS = ("fake_fail", "fake_delay", "fake_async")


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
        task.internal["fake_power"] = state

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


class FakeDeploy:
    def validate(self, task: NodeTask) -> None:
        _validate(task)

    def write_image(self, task: NodeTask) -> StepResult:
        _step(task, "write_image")
        task.internal["fake_disk"] = task.instance.get("image_sha256")
        return "wait" if task.driver_info.get("fake_async") else "done"

    def wipe_disks(self, task: NodeTask) -> StepResult:
        _step(task, "wipe_disks")
        task.internal.pop("fake_disk", None)
        return "wait" if task.driver_info.get("fake_async") else "done"


class FakeNetwork:
    def validate(self, task: NodeTask) -> None:
        _validate(task)

    def attach(self, task: NodeTask) -> None:
        _step(task, "attach")
        task.internal["fake_networks"] = [
            a["network_id"] for a in task.instance.get("addresses", [])
        ]

    def detach(self, task: NodeTask) -> None:
        _step(task, "detach")
        task.internal.pop("fake_networks", None)


def fake_driver() -> Driver:
    return Driver("fake", FakePower(), FakeManagement(), FakeDeploy(), FakeNetwork())


register_driver("fake", fake_driver)
