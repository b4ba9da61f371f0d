"""Small driver interfaces, Ironic-style: one concern each, each with a cheap ``validate()``.

Drivers never touch the database: they get a :class:`NodeTask` (plain data, secrets
already decrypted) and may record private bookkeeping in ``task.internal``, which the
caller persists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

StepResult = Literal["done", "wait"]


class DriverError(Exception):
    """A hardware or network operation failed; ``kind`` says whether retrying may help."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind  # "auth" | "unreachable" | "transient" | "unsupported" | "error"


@dataclass
class NodeTask:
    node_id: str
    driver_info: dict[str, Any]
    properties: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    internal: dict[str, Any] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)
    # Set for deploys: image location and checksum, instance id, networks, ssh keys.
    instance: dict[str, Any] = field(default_factory=dict)
    driver: str = "fake"  # the node's driver name, for get_driver()


class PowerInterface(Protocol):
    def validate(self, task: NodeTask) -> None: ...
    def get_power_state(self, task: NodeTask) -> str: ...
    def set_power_state(self, task: NodeTask, state: str) -> None: ...
    def reboot(self, task: NodeTask) -> None: ...


class ManagementInterface(Protocol):
    def validate(self, task: NodeTask) -> None: ...
    def set_boot_device(self, task: NodeTask, device: str, persistent: bool = False) -> None: ...
    def get_boot_device(self, task: NodeTask) -> str | None: ...


class DeployInterface(Protocol):
    """Writing and wiping disks. Returns "wait" when an agent will call back later."""

    def validate(self, task: NodeTask) -> None: ...
    def write_image(self, task: NodeTask) -> StepResult: ...
    def wipe_disks(self, task: NodeTask) -> StepResult: ...


class NetworkInterface(Protocol):
    def validate(self, task: NodeTask) -> None: ...
    def attach(self, task: NodeTask) -> None: ...
    def detach(self, task: NodeTask) -> None: ...


@dataclass(frozen=True)
class Driver:
    """A hardware type: one implementation per interface."""

    name: str
    power: PowerInterface
    management: ManagementInterface
    deploy: DeployInterface
    network: NetworkInterface

    def validate(self, task: NodeTask) -> dict[str, dict[str, Any]]:
        """Per-interface ``{result, reason}``, like ``ironic node-validate``."""
        out: dict[str, dict[str, Any]] = {}
        for name in ("power", "management", "deploy", "network"):
            try:
                getattr(self, name).validate(task)
                out[name] = {"result": True, "reason": None}
            except DriverError as exc:
                out[name] = {"result": False, "reason": str(exc)}
        return out


_REGISTRY: dict[str, Callable[[], Driver]] = {}


def register_driver(name: str, factory: Callable[[], Driver]) -> None:
    _REGISTRY[name] = factory


def get_driver(name: str) -> Driver:
    # Imported here so registration happens on first use without import cycles.
    from workers.drivers import fake  # noqa: F401

    try:
        return _REGISTRY[name]()
    except KeyError:
        raise DriverError(
            f"unknown driver '{name}'; enabled: {', '.join(sorted(_REGISTRY))}", "unsupported"
        ) from None


def enabled_drivers() -> list[str]:
    from workers.drivers import fake  # noqa: F401

    return sorted(_REGISTRY)
