"""The ``ipmi`` hardware type: IPMI 2.0 (lanplus) through pyghmi's IPMI client.

``driver_info``:
- ``ipmi_address`` (required): IP address or host name of the BMC;
- ``ipmi_port``: UDP port, default 623;
- ``ipmi_username`` / ``ipmi_password``: BMC credentials (the password is encrypted at rest);
- ``ipmi_priv_level``: ``ADMINISTRATOR`` (default), ``OPERATOR`` or ``USER``;
- ``ipmi_cipher_suite``: 3 or 17. pyghmi offers 17 (SHA-256) and falls back to 3 (SHA-1) by
  itself; other suites (e.g. 0, no authentication) are refused rather than silently ignored;
- ``ipmi_bridging``: only ``no``; bridged BMCs are not supported (validate says so).

pyghmi runs only inside the per-call child processes of :mod:`workers.drivers.isolation`,
always with ``bytes`` credentials (with ``str`` a second session in one process can hang).
"""

from __future__ import annotations

import contextlib
import datetime
import re
from dataclasses import dataclass
from typing import Any

from portal.core.states import POWER_OFF, POWER_ON, SOFT_POWER_OFF
from workers.drivers import bmc
from workers.drivers.agent import AgentDeploy
from workers.drivers.base import Driver, DriverError, ErrorKind, Inventory, NodeTask

PRIV_LEVELS = {"ADMINISTRATOR": 4, "OPERATOR": 3, "USER": 2}
CIPHER_SUITES = (3, 17)
FIELDS = (
    "ipmi_address",
    "ipmi_port",
    "ipmi_username",
    "ipmi_password",
    "ipmi_priv_level",
    "ipmi_cipher_suite",
    "ipmi_bridging",
)
SECRET_FIELDS = ("ipmi_password",)
BOOT_DEVICES = {"pxe": "network", "disk": "hd", "cdrom": "optical", "bios": "setup"}
MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")


@dataclass(frozen=True)
class IpmiInfo:
    address: str
    port: int
    username: bytes
    password: bytes
    priv_level: int

    @classmethod
    def parse(cls, info: dict[str, Any]) -> IpmiInfo:
        bmc.reject_unknown(info, "ipmi_", FIELDS)
        address = bmc.host(bmc.require(info, "ipmi_address"), "ipmi_address")
        priv = bmc.optional_str(info, "ipmi_priv_level", "ADMINISTRATOR").upper()
        if priv not in PRIV_LEVELS:
            raise DriverError(
                f"driver_info.ipmi_priv_level must be one of {', '.join(PRIV_LEVELS)}",
                ErrorKind.INVALID,
            )
        suite = info.get("ipmi_cipher_suite")
        if suite is not None and str(suite) not in {str(s) for s in CIPHER_SUITES}:
            raise DriverError(
                f"driver_info.ipmi_cipher_suite {suite!r} is not supported; pyghmi speaks "
                "cipher suites 17 (SHA-256) and 3 (SHA-1)",
                ErrorKind.UNSUPPORTED,
            )
        bridging = bmc.optional_str(info, "ipmi_bridging", "no")
        if bridging not in ("no", ""):
            raise DriverError(
                f"driver_info.ipmi_bridging '{bridging}' is not supported (only 'no')",
                ErrorKind.UNSUPPORTED,
            )
        username = bmc.optional_str(info, "ipmi_username")
        if len(username.encode()) > 16:
            raise DriverError(
                "driver_info.ipmi_username is longer than IPMI's 16 bytes", ErrorKind.INVALID
            )
        password = bmc.optional_str(info, "ipmi_password")
        if len(password.encode()) > 20:
            raise DriverError(
                "driver_info.ipmi_password is longer than IPMI's 20 bytes", ErrorKind.INVALID
            )
        return cls(
            address=address,
            port=bmc.port_number(info, "ipmi_port", 623),
            username=username.encode(),
            password=password.encode(),
            priv_level=PRIV_LEVELS[priv],
        )


# -- what runs in the child process ---------------------------------------------------------

AUTH_WORDS = ("password", "unauthorized", "privilege", "authentication", "rakp", "username")
UNREACHABLE_WORDS = (
    "timeout",
    "timed out",
    "unreachable",
    "no route",
    "name or service",
    "not known",
    "refused",
    "unable to establish",
)
TRANSIENT_WORDS = (
    "busy",
    "broken",
    "no longer connected",
    "temporar",
    "retry",
    "out of space",
    "not available now",
)


def classify(exc: BaseException, info: IpmiInfo | None = None) -> DriverError:
    """pyghmi raises one exception type; its message tells what went wrong."""
    if isinstance(exc, DriverError):
        return exc
    if info is not None and not any(exc.args):  # a login that got no answer at all
        return DriverError(
            f"IPMI: no answer from the BMC at {info.address}:{info.port} (login timed out)",
            ErrorKind.UNREACHABLE,
        )
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if any(w in low for w in AUTH_WORDS):
        kind = ErrorKind.AUTH
    elif any(w in low for w in UNREACHABLE_WORDS) or isinstance(exc, OSError):
        kind = ErrorKind.UNREACHABLE
    elif any(w in low for w in TRANSIENT_WORDS):
        kind = ErrorKind.TRANSIENT
    elif "invalid command" in low or "not supported" in low or "invalid data field" in low:
        kind = ErrorKind.UNSUPPORTED
    else:
        kind = ErrorKind.ERROR
    return DriverError(f"IPMI: {text}", kind)


def _command(info: IpmiInfo) -> Any:
    from pyghmi.ipmi.command import Command

    try:
        return Command(
            bmc=info.address,
            userid=info.username,
            password=info.password,
            port=info.port,
            privlevel=info.priv_level,
            keepalive=False,
        )
    except Exception as exc:
        raise classify(exc, info) from None


def _run(info: IpmiInfo, op: str, *args: Any, **kwargs: Any) -> Any:
    cmd = _command(info)
    try:
        return getattr(cmd, op)(*args, **kwargs)
    except Exception as exc:
        raise classify(exc) from None
    finally:
        # The answer is in hand; a failed logout only ages out on the BMC.
        with contextlib.suppress(Exception):
            cmd.ipmi_session.logout()


def get_power(info: IpmiInfo) -> str:
    state = _run(info, "get_power").get("powerstate")
    return POWER_ON if state == "on" else POWER_OFF


def set_power(info: IpmiInfo, target: str, wait: float) -> None:
    request = {POWER_ON: "on", POWER_OFF: "off", SOFT_POWER_OFF: "softoff"}[target]
    _run(info, "set_power", request, wait=max(1, int(wait)))


def reboot(info: IpmiInfo, wait: float) -> None:
    if get_power(info) == POWER_OFF:
        _run(info, "set_power", "on", wait=max(1, int(wait)))
    else:
        _run(info, "set_power", "reset")


def set_bootdev(info: IpmiInfo, device: str, persistent: bool, uefi: bool | None) -> None:
    _run(info, "set_bootdev", BOOT_DEVICES[device], persist=persistent, uefiboot=uefi)


def get_bootdev(info: IpmiInfo) -> str | None:
    dev = _run(info, "get_bootdev").get("bootdev")
    back = {v: k for k, v in BOOT_DEVICES.items()}
    return back.get(dev)


def _plain(value: Any) -> Any:
    """FRU values as JSON: bytes, dates and nested containers included."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


HEALTH = {0: "ok", 1: "warning", 2: "critical", 4: "failed"}  # pyghmi.constants.Health


def _reading(r: Any) -> dict[str, Any]:
    kind = str(getattr(r, "type", "") or "").lower()
    return {
        "name": str(r.name),
        "type": {"temperature": "temperature", "fan": "fan"}.get(kind, kind or "other"),
        "value": r.value,
        "units": getattr(r, "units", None) or None,
        "health": HEALTH.get(getattr(r, "health", None)),  # type: ignore[arg-type]
        "states": [str(s) for s in getattr(r, "states", []) or []],
    }


def sensors(info: IpmiInfo) -> list[dict[str, Any]]:
    cmd = _command(info)
    try:
        return [_reading(r) for r in cmd.get_sensor_data()]
    except Exception as exc:
        raise classify(exc) from None


def inventory(info: IpmiInfo) -> dict[str, Any]:
    cmd = _command(info)
    try:
        fru = {str(name): _plain(data) for name, data in cmd.get_inventory()}
    except Exception as exc:
        raise classify(exc) from None
    try:
        readings = [_reading(r) for r in cmd.get_sensor_data()]
    except Exception:  # sensors are a bonus here; the FRU is what inspection needs
        readings = []
    return {"fru": fru, "sensors": readings}


# -- the interfaces -------------------------------------------------------------------------


class IpmiPower:
    def validate(self, task: NodeTask) -> None:
        IpmiInfo.parse(task.driver_info)

    def get_power_state(self, task: NodeTask) -> str:
        return bmc.call(task, get_power, IpmiInfo.parse(task.driver_info), label="get power")

    def set_power_state(self, task: NodeTask, state: str) -> None:
        info = IpmiInfo.parse(task.driver_info)
        bmc.call(
            task,
            set_power,
            info,
            state,
            task.power_wait,
            label=f"set {state}",
            extra_time=task.power_wait,
        )

    def reboot(self, task: NodeTask) -> None:
        info = IpmiInfo.parse(task.driver_info)
        bmc.call(task, reboot, info, task.power_wait, label="reboot", extra_time=task.power_wait)


class IpmiManagement:
    def validate(self, task: NodeTask) -> None:
        IpmiInfo.parse(task.driver_info)

    def set_boot_device(self, task: NodeTask, device: str, persistent: bool = False) -> None:
        if device not in BOOT_DEVICES:
            raise DriverError(
                f"boot device '{device}' not supported; use {', '.join(BOOT_DEVICES)}",
                ErrorKind.UNSUPPORTED,
            )
        mode = task.capabilities.get("boot_mode")
        uefi = None if mode is None else mode == "uefi"
        info = IpmiInfo.parse(task.driver_info)
        bmc.call(task, set_bootdev, info, device, persistent, uefi, label=f"set boot {device}")

    def get_boot_device(self, task: NodeTask) -> str | None:
        return bmc.call(task, get_bootdev, IpmiInfo.parse(task.driver_info), label="get boot")

    def get_sensors(self, task: NodeTask) -> list[dict[str, Any]]:
        return bmc.call(task, sensors, IpmiInfo.parse(task.driver_info), label="read sensors")


class IpmiInspect:
    def validate(self, task: NodeTask) -> None:
        IpmiInfo.parse(task.driver_info)

    def inspect_hardware(self, task: NodeTask) -> Inventory:
        """Generic IPMI has FRU records and sensors but no CPU/RAM/disk inventory: only what
        the FRU holds is applied (MAC addresses some vendors record there); sizes stay as
        the admin entered them."""
        raw = bmc.call(task, inventory, IpmiInfo.parse(task.driver_info), label="read FRU")
        return Inventory(macs=sorted(_macs_in(raw["fru"])), raw=raw)


def _macs_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_macs_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_macs_in(v) for v in value)) if value else set()
    if isinstance(value, str) and MAC.match(value.strip()):
        mac = value.strip().lower().replace("-", ":")
        return set() if mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff") else {mac}
    return set()


def ipmi_driver() -> Driver:
    # Disks are written by the deploy agent; switch ports by the switch drivers
    # (workers/switches), which follow the node's ports, not its BMC.
    return Driver(
        "ipmi",
        IpmiPower(),
        IpmiManagement(),
        AgentDeploy(),
        IpmiInspect(),
        secret_fields=SECRET_FIELDS,
    )
