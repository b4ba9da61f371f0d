"""Small driver interfaces, Ironic-style: one concern each, each with a cheap ``validate()``.

Drivers never touch the database: they get a :class:`NodeTask` (plain data, secrets
already decrypted) and may record private bookkeeping in ``task.internal``, which the
caller persists.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from portal.core.secrets import SecretFields, redact, scrub, secret_values

StepResult = Literal["done", "wait"]


class ErrorKind:
    """How a driver error is classified; it decides whether retrying can help."""

    AUTH = "auth"  # wrong credentials or privilege: never retried
    UNREACHABLE = "unreachable"  # no answer (down, wrong address, timeout)
    TRANSIENT = "transient"  # busy BMC, 5xx, dropped session: retried with backoff
    UNSUPPORTED = "unsupported"  # the BMC or driver cannot do this
    INVALID = "invalid"  # driver_info is missing or malformed (from validate())
    REJECTED = "rejected"  # the device refused a command (a switch's CLI error): never retried
    ERROR = "error"  # anything else


class DriverError(Exception):
    """A hardware or network operation failed; ``kind`` says whether retrying may help."""

    def __init__(self, message: str, kind: str = ErrorKind.ERROR) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:  # keep ``kind`` across process boundaries
        return (type(self), (str(self), self.kind))


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
    # Which driver_info keys are secret (every driver's declared ones): set by whoever
    # builds the task from the registry, so this module needs no registry.
    secret_keys: SecretFields = field(default_factory=SecretFields)
    # Hard deadline of one BMC call, and how long a power change may take to land.
    call_timeout: float = 30.0
    power_wait: float = 60.0

    def __repr__(self) -> str:  # logs and tracebacks never show the secrets
        return (
            f"NodeTask(node_id={self.node_id!r}, driver={self.driver!r}, "
            f"driver_info={redact(self.driver_info, self.secret_keys)!r})"
        )


class PowerInterface(Protocol):
    def validate(self, task: NodeTask) -> None: ...
    def get_power_state(self, task: NodeTask) -> str: ...
    def set_power_state(self, task: NodeTask, state: str) -> None: ...
    def reboot(self, task: NodeTask) -> None: ...


class ManagementInterface(Protocol):
    def validate(self, task: NodeTask) -> None: ...
    def set_boot_device(self, task: NodeTask, device: str, persistent: bool = False) -> None: ...
    def get_boot_device(self, task: NodeTask) -> str | None: ...
    def get_sensors(self, task: NodeTask) -> list[dict[str, Any]]:
        """Readings as ``{name, type, value, units, health}``; types: temperature, fan, power…"""
        ...


class InspectInterface(Protocol):
    """Out-of-band inspection: what the BMC knows about the hardware."""

    def validate(self, task: NodeTask) -> None: ...
    def inspect_hardware(self, task: NodeTask) -> Inventory: ...


@dataclass
class Inventory:
    """What inspection found. ``properties``/``capabilities`` hold only what the BMC told;
    ``raw`` is the BMC's own view, stored for admins."""

    properties: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, str] = field(default_factory=dict)
    macs: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


class DeployInterface(Protocol):
    """Writing and wiping disks. Returns "wait" when an agent will call back later."""

    # Image formats written as they are; others are converted to raw first (the deploy
    # plan's prepare_image step), and write_image gets the raw copy's sha256 and size.
    image_formats: tuple[str, ...]

    def validate(self, task: NodeTask) -> None: ...
    def write_image(self, task: NodeTask) -> StepResult: ...
    def write_configdrive(self, task: NodeTask) -> StepResult: ...
    def wipe_disks(self, task: NodeTask) -> StepResult: ...


@dataclass(frozen=True)
class Driver:
    """A hardware type: one implementation per interface."""

    name: str
    power: PowerInterface
    management: ManagementInterface
    deploy: DeployInterface
    inspect: InspectInterface
    # driver_info keys whose values are secrets (encrypted at rest, never shown, scrubbed
    # from errors), at any depth; keys following the generic rule are secret anyway.
    secret_fields: tuple[str, ...] = ()

    INTERFACES: ClassVar[tuple[str, ...]] = ("power", "management", "deploy", "inspect")

    def validate(self, task: NodeTask) -> dict[str, dict[str, Any]]:
        """Per-interface ``{result, reason}``, like ``ironic node-validate``."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.INTERFACES:
            try:
                getattr(self, name).validate(task)
                out[name] = {"result": True, "reason": None}
            except DriverError as exc:
                out[name] = {"result": False, "reason": str(exc)}
        return out


# What a deploy needs to know about the image, from the instance being deployed.
IMAGE_FIELDS = ("image_url", "image_sha256", "image_disk_format")


def check_image_fields(task: NodeTask) -> None:
    """The deploy interface's check: the image of the instance being deployed is usable."""
    if not task.instance:
        raise DriverError(
            "no instance is being deployed on this node, so the image fields "
            f"({', '.join(IMAGE_FIELDS)}) are missing; they are set when an instance is "
            "scheduled here",
            ErrorKind.INVALID,
        )
    missing = [f for f in IMAGE_FIELDS if not task.instance.get(f)]
    if missing:
        raise DriverError(
            f"the instance's image lacks {', '.join(missing)} (is the image uploaded and active?)",
            ErrorKind.INVALID,
        )


# Libraries the BMC drivers use in their per-call child processes. Imported once by the
# long-lived parents (worker start, power sync) so every forked child finds them loaded:
# importing them in each child cost 0.2-0.3 s of CPU per BMC call.
DRIVER_LIBRARIES = ("pyghmi.ipmi.command", "sushy")


def preload_libraries() -> None:
    for name in DRIVER_LIBRARIES:
        importlib.import_module(name)


class Scrubbed:
    """An interface whose errors never carry the task's secrets: every method that takes a
    :class:`NodeTask` re-raises a failure with the secrets (at any depth of driver_info,
    in any text form) and URL credentials replaced by ``******``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                task = next((a for a in args if isinstance(a, NodeTask)), None)
                clean = scrub_error(str(exc), task)
                if isinstance(exc, DriverError):
                    if clean == str(exc):
                        raise
                    raise DriverError(clean, exc.kind) from None
                if clean != str(exc):
                    raise DriverError(f"{type(exc).__name__}: {clean}", ErrorKind.ERROR) from None
                raise

        return call


URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")


def scrub_error(text: str, task: NodeTask | None) -> str:
    """``text`` without the secrets of ``task``'s driver_info nor passwords in URLs."""
    if task is not None:
        text = scrub(text, secret_values(task.driver_info, task.secret_keys))
    return URL_CREDENTIALS.sub(r"\1:******@", text)
