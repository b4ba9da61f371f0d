"""The ``redfish`` hardware type, on the ``sushy`` library.

Why sushy and not pyghmi's Redfish client: pyghmi checks a BMC's certificate either against
the system CA store or through a fingerprint callback, so a per-node CA bundle would mean
hand-written certificate verification; it speaks HTTPS only and caches the boot device per
client object. sushy (what Ironic uses) takes ``verify=`` as requests does (CA bundle path,
true or false), maps HTTP errors to exception classes (401/403 → AccessError, 5xx →
ServerSideError) and models processors, memory, storage and NICs.

``driver_info``:
- ``redfish_address`` (required): ``https://host[:port]`` (``http://`` works but sends the
  password in clear text; a bare host means https);
- ``redfish_system_id``: the system's id or path (``/redfish/v1/Systems/<id>``); optional
  when the BMC has exactly one system;
- ``redfish_username`` / ``redfish_password`` (the password is encrypted at rest);
- ``redfish_verify_ca``: true (default: the system CA store), false (explicit opt-out), a
  PEM bundle (text starting with ``-----BEGIN``) or the path of one on the workers.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from portal.core.states import POWER_OFF, POWER_ON, SOFT_POWER_OFF
from workers.drivers import bmc
from workers.drivers.agent import AgentDeploy
from workers.drivers.base import Driver, DriverError, ErrorKind, Inventory, NodeTask

FIELDS = (
    "redfish_address",
    "redfish_system_id",
    "redfish_username",
    "redfish_password",
    "redfish_verify_ca",
)
SYSTEMS = "/redfish/v1/Systems/"
ARCH = {"x86": "x86_64", "ARM": "aarch64", "Power": "ppc64le"}
POLL = 0.5  # seconds between power-state reads while a change lands


@dataclass(frozen=True)
class RedfishInfo:
    address: str  # scheme://host:port
    system_path: str | None
    username: str
    password: str
    verify: bool | str  # bool, or a CA bundle: PEM text or a path

    @classmethod
    def parse(cls, info: dict[str, Any]) -> RedfishInfo:
        bmc.reject_unknown(info, "redfish_", FIELDS)
        raw = bmc.require(info, "redfish_address")
        url = urlparse(raw if "://" in raw else f"https://{raw}")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise DriverError(
                f"driver_info.redfish_address must be https://host[:port], not {raw!r}",
                ErrorKind.INVALID,
            )
        try:
            port = url.port
        except ValueError:
            raise DriverError(
                f"driver_info.redfish_address has a bad port: {raw!r}", ErrorKind.INVALID
            ) from None
        bmc.host(url.hostname, "redfish_address")
        system = bmc.optional_str(info, "redfish_system_id").strip() or None
        if system is not None and not system.startswith("/"):
            system = SYSTEMS + system
        return cls(
            address=f"{url.scheme}://{url.netloc}" if port else f"{url.scheme}://{url.hostname}",
            system_path=system,
            username=bmc.optional_str(info, "redfish_username"),
            password=bmc.optional_str(info, "redfish_password"),
            verify=_verify(info.get("redfish_verify_ca", True)),
        )


def _verify(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false", "1", "0", "yes", "no"):
            return text.lower() in ("true", "1", "yes")
        if text.startswith("-----BEGIN"):
            return text
        if text and os.path.isabs(text):
            return text
    raise DriverError(
        "driver_info.redfish_verify_ca must be true, false, a PEM CA bundle or an absolute path",
        ErrorKind.INVALID,
    )


# -- what runs in the child process ---------------------------------------------------------


def classify(exc: BaseException) -> DriverError:
    import sushy.exceptions as sx

    if isinstance(exc, DriverError):
        return exc
    text = str(exc)
    if isinstance(exc, sx.AccessError):
        return DriverError(
            f"Redfish: access denied (check the credentials): {text}", ErrorKind.AUTH
        )
    if isinstance(exc, sx.ConnectionError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return DriverError(
                "Redfish: the BMC's TLS certificate is not trusted (set redfish_verify_ca to "
                "its CA bundle)",
                ErrorKind.AUTH,
            )
        return DriverError(f"Redfish: cannot connect: {text}", ErrorKind.UNREACHABLE)
    if isinstance(exc, sx.ServerSideError):
        return DriverError(f"Redfish: BMC error: {text}", ErrorKind.TRANSIENT)
    if isinstance(exc, sx.ResourceNotFoundError):
        return DriverError(f"Redfish: not found: {text}", ErrorKind.ERROR)
    if isinstance(exc, sx.MissingActionError | sx.MissingAttributeError):
        return DriverError(f"Redfish: not supported by this BMC: {text}", ErrorKind.UNSUPPORTED)
    return DriverError(f"Redfish: {type(exc).__name__}: {text}", ErrorKind.ERROR)


class _Client:
    """A sushy connection to one system, for the length of one call."""

    def __init__(self, info: RedfishInfo, timeout: float) -> None:
        import sushy

        self._tmp: str | None = None
        verify = info.verify
        if isinstance(verify, str) and verify.startswith("-----BEGIN"):
            fd, self._tmp = tempfile.mkstemp(suffix=".pem")
            with os.fdopen(fd, "w") as f:
                f.write(verify)
            verify = self._tmp
        # Basic auth per request: one call is a handful of requests, so a Redfish session
        # (two more requests, and a session slot on the BMC) would cost more than it saves.
        self.root = sushy.Sushy(
            info.address,
            verify=verify,
            auth=sushy.auth.BasicAuth(info.username, info.password),
            # One attempt per request (0 would mean sushy's default of 3, with 2 s sleeps):
            # transient errors are retried by workers.drivers.retry, by kind.
            server_side_retries=1,
            server_side_retries_delay=1,
            read_timeout=timeout,
            connect_timeout=min(timeout, 10),
        )
        path = info.system_path
        if path is None:
            members = self.root.get_system_collection().members_identities
            if len(members) != 1:
                raise DriverError(
                    f"the BMC has {len(members)} systems ({', '.join(members)}): "
                    "set driver_info.redfish_system_id",
                    ErrorKind.INVALID,
                )
            path = members[0]
        self.system = self.root.get_system(path)

    def close(self) -> None:
        if self._tmp:
            os.unlink(self._tmp)


def _with_client(info: RedfishInfo, timeout: float, fn: Any) -> Any:
    client = None
    try:
        client = _Client(info, timeout)
        return fn(client)
    except Exception as exc:
        raise classify(exc) from None
    finally:
        if client is not None:
            client.close()


def _power_of(system: Any) -> str:
    import sushy

    system.refresh(force=True)
    return POWER_ON if system.power_state == sushy.PowerState.ON else POWER_OFF


def get_power(info: RedfishInfo, timeout: float) -> str:
    return str(_with_client(info, timeout, lambda c: _power_of(c.system)))


def _reset_and_wait(c: _Client, reset: Any, want: str, wait: float) -> None:
    """Ask for a power change and poll until it has landed: BMCs apply it seconds later."""
    c.system.reset_system(reset)
    deadline = time.monotonic() + wait
    while _power_of(c.system) != want:
        if time.monotonic() > deadline:
            raise DriverError(
                f"Redfish: power did not reach '{want}' within {wait:g} s", ErrorKind.TRANSIENT
            )
        time.sleep(POLL)


def set_power(info: RedfishInfo, timeout: float, target: str, wait: float) -> None:
    import sushy

    def run(c: _Client) -> None:
        if _power_of(c.system) == (POWER_OFF if target == SOFT_POWER_OFF else target):
            return  # already there: idempotent, and no needless reset on a busy BMC
        reset = {
            POWER_ON: sushy.ResetType.ON,
            POWER_OFF: sushy.ResetType.FORCE_OFF,
            SOFT_POWER_OFF: sushy.ResetType.GRACEFUL_SHUTDOWN,
        }[target]
        _reset_and_wait(c, reset, POWER_OFF if target == SOFT_POWER_OFF else target, wait)

    _with_client(info, timeout, run)


def reboot(info: RedfishInfo, timeout: float, wait: float) -> None:
    """Off (if on), then on, each confirmed: "on" afterwards really is a fresh boot."""
    import sushy

    def run(c: _Client) -> None:
        if _power_of(c.system) == POWER_ON:
            _reset_and_wait(c, sushy.ResetType.FORCE_OFF, POWER_OFF, wait)
        _reset_and_wait(c, sushy.ResetType.ON, POWER_ON, wait)

    _with_client(info, timeout, run)


def set_bootdev(
    info: RedfishInfo, timeout: float, device: str, persistent: bool, mode: str | None
) -> None:
    import sushy

    target = {
        "pxe": sushy.BootSource.PXE,
        "disk": sushy.BootSource.HDD,
        "cdrom": sushy.BootSource.CD,
        "bios": sushy.BootSource.BIOS_SETUP,
    }[device]
    enabled = (
        sushy.BootSourceOverrideEnabled.CONTINUOUS
        if persistent
        else sushy.BootSourceOverrideEnabled.ONCE
    )
    boot_mode = {
        "uefi": sushy.BootSourceOverrideMode.UEFI,
        "bios": sushy.BootSourceOverrideMode.LEGACY,
    }.get(mode or "")
    _with_client(
        info,
        timeout,
        lambda c: c.system.set_system_boot_options(target=target, enabled=enabled, mode=boot_mode),
    )


def get_bootdev(info: RedfishInfo, timeout: float) -> str | None:
    import sushy

    back = {
        sushy.BootSource.PXE: "pxe",
        sushy.BootSource.HDD: "disk",
        sushy.BootSource.CD: "cdrom",
        sushy.BootSource.BIOS_SETUP: "bios",
    }
    found: str | None = _with_client(info, timeout, lambda c: back.get(c.system.boot.target))
    return found


def _gib(size_bytes: int | None) -> int | None:
    return None if not size_bytes else int(size_bytes // 2**30)


def _section(read: Any, missing: list[str], name: str) -> Any:
    """One part of the inventory; a BMC that lacks it (many do) leaves it out, noted."""
    import sushy.exceptions as sx

    try:
        return read()
    except (sx.MissingAttributeError, sx.ResourceNotFoundError, sx.MissingActionError):
        missing.append(name)
        return None


def _disks(s: Any) -> list[int]:
    sizes: list[int] = []
    for read in (lambda: s.simple_storage.disks_sizes_bytes, lambda: s.storage.drives_sizes_bytes):
        try:
            sizes.extend(int(x) for x in read() or [])
        except Exception:  # a BMC without this collection: the other may have the disks
            continue
    return sorted(set(sizes), reverse=True)


def _inventory(c: _Client) -> dict[str, Any]:
    s = c.system
    missing: list[str] = []
    out: dict[str, Any] = {
        "system": {
            "id": s.identity,
            "path": s.path,
            "uuid": s.uuid,
            "manufacturer": s.manufacturer,
            "model": s.model,
            "serial_number": getattr(s, "serial_number", None),
            "bios_version": s.bios_version,
        }
    }
    procs = _section(lambda: s.processors.summary, missing, "processors")
    out["processors"] = {
        "count": procs.count if procs else None,
        "architecture": getattr(procs.architecture, "value", procs.architecture) if procs else None,
    }
    out["memory"] = {"total_gib": s.memory_summary.size_gib if s.memory_summary else None}
    out["disks_bytes"] = _disks(s)
    nics = _section(lambda: s.ethernet_interfaces.summary, missing, "ethernet_interfaces") or {}
    out["nics"] = {str(mac).lower(): getattr(st, "value", st) for mac, st in nics.items()}
    mode = s.boot.mode
    out["boot_mode"] = getattr(mode, "value", mode)
    out["missing"] = missing
    return out


def inventory(info: RedfishInfo, timeout: float) -> dict[str, Any]:
    return dict(_with_client(info, timeout, _inventory))


def _sensors(c: _Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chassis in c.system.chassis or []:
        try:
            thermal = chassis.thermal
        except Exception:
            thermal = None
        for t in getattr(thermal, "temperatures", None) or []:
            out.append(
                {
                    "name": t.name,
                    "type": "temperature",
                    "value": t.reading_celsius,
                    "units": "°C",
                    "health": _health(t),
                    "states": [],
                }
            )
        for f in getattr(thermal, "fans", None) or []:
            out.append(
                {
                    "name": f.name,
                    "type": "fan",
                    "value": f.reading,
                    "units": getattr(f.reading_units, "value", f.reading_units),
                    "health": _health(f),
                    "states": [],
                }
            )
        try:
            power = chassis.power
        except Exception:
            power = None
        for p in getattr(power, "power_control", None) or []:
            out.append(
                {
                    "name": p.name or "Power",
                    "type": "power",
                    "value": p.power_consumed_watts,
                    "units": "W",
                    "health": _health(p),
                    "states": [],
                }
            )
    return out


def _health(item: Any) -> str | None:
    health = getattr(getattr(item, "status", None), "health", None)
    return None if health is None else str(getattr(health, "value", health)).lower()


def sensors(info: RedfishInfo, timeout: float) -> list[dict[str, Any]]:
    return list(_with_client(info, timeout, _sensors))


# -- the interfaces -------------------------------------------------------------------------


def _parse(task: NodeTask) -> RedfishInfo:
    return RedfishInfo.parse(task.driver_info)


class RedfishPower:
    def validate(self, task: NodeTask) -> None:
        _parse(task)

    def get_power_state(self, task: NodeTask) -> str:
        return bmc.call(task, get_power, _parse(task), task.call_timeout, label="get power")

    def set_power_state(self, task: NodeTask, state: str) -> None:
        bmc.call(
            task,
            set_power,
            _parse(task),
            task.call_timeout,
            state,
            task.power_wait,
            label=f"set {state}",
            extra_time=task.power_wait,
        )

    def reboot(self, task: NodeTask) -> None:
        bmc.call(
            task,
            reboot,
            _parse(task),
            task.call_timeout,
            task.power_wait,
            label="reboot",
            extra_time=2 * task.power_wait,
        )


class RedfishManagement:
    def validate(self, task: NodeTask) -> None:
        _parse(task)

    def set_boot_device(self, task: NodeTask, device: str, persistent: bool = False) -> None:
        if device not in ("pxe", "disk", "cdrom", "bios"):
            raise DriverError(
                f"boot device '{device}' not supported; use pxe, disk, cdrom, bios",
                ErrorKind.UNSUPPORTED,
            )
        bmc.call(
            task,
            set_bootdev,
            _parse(task),
            task.call_timeout,
            device,
            persistent,
            task.capabilities.get("boot_mode"),
            label=f"set boot {device}",
        )

    def get_boot_device(self, task: NodeTask) -> str | None:
        return bmc.call(task, get_bootdev, _parse(task), task.call_timeout, label="get boot")

    def get_sensors(self, task: NodeTask) -> list[dict[str, Any]]:
        return bmc.call(task, sensors, _parse(task), task.call_timeout, label="read sensors")


class RedfishInspect:
    def validate(self, task: NodeTask) -> None:
        _parse(task)

    def inspect_hardware(self, task: NodeTask) -> Inventory:
        raw = bmc.call(task, inventory, _parse(task), task.call_timeout, label="inspect")
        return inventory_from(raw)


def inventory_from(raw: dict[str, Any]) -> Inventory:
    """Properties and capabilities from what the BMC reported; unknown values are left out
    rather than guessed."""
    props: dict[str, Any] = {}
    if raw["processors"]["count"]:
        props["cpus"] = raw["processors"]["count"]
    arch = ARCH.get(str(raw["processors"]["architecture"]))
    if arch:
        props["cpu_arch"] = arch
    if raw["memory"]["total_gib"]:
        props["memory_mb"] = int(raw["memory"]["total_gib"] * 1024)
    if raw["disks_bytes"]:
        # The biggest disk, less 1 GiB for the partition table and config drive (as Ironic).
        props["local_gb"] = max(0, int(raw["disks_bytes"][0] // 2**30) - 1)
    caps: dict[str, str] = {}
    mode = str(raw.get("boot_mode") or "")
    if mode in ("UEFI", "Legacy"):
        caps["boot_mode"] = "uefi" if mode == "UEFI" else "bios"
    macs = sorted(m for m in raw["nics"] if m and m != "00:00:00:00:00:00")
    return Inventory(properties=props, capabilities=caps, macs=macs, raw=raw)


def redfish_driver() -> Driver:
    # Disks are written by the deploy agent; switch ports by the switch drivers
    # (workers/switches), which follow the node's ports, not its BMC.
    return Driver(
        "redfish",
        RedfishPower(),
        RedfishManagement(),
        AgentDeploy(),
        RedfishInspect(),
        secret_fields=("redfish_password",),
    )
