"""OpenIPMI ``ipmi_sim`` as a real IPMI 2.0 (RMCP+) BMC on 127.0.0.1.

One ``IpmiSim`` is one ``ipmi_sim`` process with its own UDP port, ``lan.conf``, emu file,
state directory and ``chassis_control`` program (a POSIX sh script). The script records what
the BMC was asked to do into ``<workdir>/chassis/``:

- ``power``: ``1``/``0`` (``get power`` prints ``power:N`` from it),
- ``boot``: the last ``set boot`` argument (``pxe``, ``default``, ``cdrom``, ``bios``, ``none``),
- ``calls.log``: every invocation, one line each (``get power``, ``get boot``, ``set power 1``,
  ``set reset 1``, ``set shutdown 1`` ...); the readiness check adds ``get power`` lines,
- ``resets``: one line per ``set reset 1``.

``get boot`` prints ``boot:<last set>`` (without it ipmi_sim answers Get System Boot Options
with 0xFF "Unspecified"); soft-off (``set shutdown 1``) powers off unless ``ignore_soft_off()``.

Assert on those (``.power``, ``.boot_device``, ``.chassis_calls``): ipmi_sim's boot-device
read-back has the "valid" bit clear, so clients read ``default`` whatever was set.

The emu file adds and enables the BMC MC at 0x20, a FRU (device 0, so ``get_inventory()``
has manufacturer/product/serial fields) and two threshold sensors with SDRs (a temperature
and a fan) with fixed readings, so ``get_sensor_data()`` returns values.

``stop()`` SIGKILLs the process (the BMC "dies", no clean shutdown); ``start()`` brings it
back on the same port with the same state (power state survives: it lives in the script's
files, not in ipmi_sim).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netboot.lab.procs import poll_until
from tests.emulators._process import EmulatedBmc, ManagedProcess

HOST = "127.0.0.1"
BMC_ADDR = 0x20

IPMI_SIM = "ipmi_sim"
IPMITOOL = "ipmitool"


def binaries_available() -> bool:
    return shutil.which(IPMI_SIM) is not None and shutil.which(IPMITOOL) is not None


# --------------------------------------------------------------------------- FRU


# ipmi_sim answers "Read FRU Data" for at most 34 bytes per request; a larger request gets
# completion code 0xC8 ("Request data field length limit exceeded"). pyghmi 1.6.19 reads
# min(224, FRU size) bytes at once and only backs off on 0xC9/0xCA, so with a FRU larger
# than 34 bytes its get_inventory() raises IpmiException. ipmitool copes with any size.
PYGHMI_MAX_FRU = 34


@dataclass(frozen=True)
class BoardInfo:
    manufacturer: str = "BMS Labs"
    product: str = "BMS Mainboard"
    serial: str = "BRD0001"
    part_number: str = "MB-1000"
    mfg_date: dt.datetime = dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class ChassisInfo:
    chassis_type: int = 0x17  # rack mount chassis
    part_number: str = "CH-1000"
    serial: str = "CHS0001"


@dataclass(frozen=True)
class FruInfo:
    """FRU device 0 (IPMI FRU spec v1.0): a product info area, optional board/chassis areas.

    The default is small enough (32 bytes) for pyghmi to read from ipmi_sim; see
    ``PYGHMI_MAX_FRU``. Add ``board``/``chassis`` only for ipmitool-based checks.
    """

    manufacturer: str = "BMS"
    product: str = "EMU"
    serial: str = "SN0001"
    model: str = ""
    version: str = ""
    asset_tag: str = ""
    board: BoardInfo | None = None
    chassis: ChassisInfo | None = None


def _tl(text: str) -> bytes:
    """Type/length byte (8-bit ASCII) + the bytes."""
    data = text.encode("ascii")
    if len(data) > 63:
        raise ValueError(f"FRU field too long (max 63 bytes): {text!r}")
    return bytes([0xC0 | len(data)]) + data


def _zero_checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def _area(body: bytes) -> bytes:
    """Close an area: end marker, pad to a multiple of 8 with the checksum last."""
    body = body + b"\xc1"
    total = len(body) + 1
    total += (-total) % 8
    body = body + b"\x00" * (total - len(body) - 1)
    body = body[:1] + bytes([total // 8]) + body[2:]
    return body + bytes([_zero_checksum(body)])


def build_fru(info: FruInfo) -> bytes:
    """Binary FRU inventory: common header + [chassis] + [board] + product info areas."""
    areas: list[bytes] = []
    offsets = [0, 0, 0]  # chassis, board, product (in 8-byte units)
    cursor = 1
    if info.chassis is not None:
        c = info.chassis
        areas.append(
            _area(bytes([0x01, 0x00, c.chassis_type]) + _tl(c.part_number) + _tl(c.serial))
        )
        offsets[0], cursor = cursor, cursor + len(areas[-1]) // 8
    if info.board is not None:
        b = info.board
        epoch = dt.datetime(1996, 1, 1, tzinfo=dt.UTC)
        minutes = int((b.mfg_date - epoch).total_seconds() // 60)
        areas.append(
            _area(
                bytes([0x01, 0x00, 0x00])
                + minutes.to_bytes(3, "little")
                + _tl(b.manufacturer)
                + _tl(b.product)
                + _tl(b.serial)
                + _tl(b.part_number)
                + _tl("")  # FRU file id
            )
        )
        offsets[1], cursor = cursor, cursor + len(areas[-1]) // 8
    areas.append(
        _area(
            bytes([0x01, 0x00, 0x00])  # version, length (filled in), language English
            + _tl(info.manufacturer)
            + _tl(info.product)
            + _tl(info.model)
            + _tl(info.version)
            + _tl(info.serial)
            + _tl(info.asset_tag)
            + _tl("")  # FRU file id
        )
    )
    offsets[2] = cursor
    header = bytes([0x01, 0x00, *offsets, 0x00, 0x00])
    header += bytes([_zero_checksum(header)])
    return header + b"".join(areas)


# ----------------------------------------------------------------------- sensors


@dataclass(frozen=True)
class SensorSpec:
    """An analog threshold sensor: reading = ``raw * m`` in ``unit`` (linear, unsigned)."""

    number: int
    name: str
    sensor_type: int  # 0x01 temperature, 0x04 fan, 0x02 voltage ...
    unit: int  # IPMI base unit: 0x01 degrees C, 0x12 RPM, 0x04 volts ...
    entity_id: int
    raw: int
    m: int = 1
    upper_critical: int = 0xF0
    upper_non_critical: int = 0xE0
    lower_critical: int = 0x00

    @property
    def value(self) -> float:
        return float(self.raw * self.m)


TEMPERATURE = SensorSpec(
    number=0x01,
    name="Inlet Temp",
    sensor_type=0x01,
    unit=0x01,
    entity_id=0x37,  # air inlet
    raw=24,
    upper_critical=85,
    upper_non_critical=75,
)
FAN = SensorSpec(
    number=0x02,
    name="Fan 1",
    sensor_type=0x04,
    unit=0x12,
    entity_id=0x1D,  # fan / cooling device
    raw=96,
    m=50,  # 4800 RPM
    upper_critical=0xFE,
    upper_non_critical=0xFD,
    lower_critical=10,
)
DEFAULT_SENSORS: tuple[SensorSpec, ...] = (TEMPERATURE, FAN)


def build_full_sdr(sensor: SensorSpec, owner: int = BMC_ADDR) -> bytes:
    """Type 01h Full Sensor Record (IPMI 2.0 table 43-1) for an analog threshold sensor."""
    name = sensor.name.encode("ascii")
    if len(name) > 16:
        raise ValueError(f"sensor name too long (max 16): {sensor.name!r}")
    if not 0 < sensor.m < 0x400:
        raise ValueError("m must fit in 10 bits")
    # fmt: off
    body = bytes(
        [
            owner,  # sensor owner id
            0x00,  # owner LUN
            sensor.number,
            sensor.entity_id,
            0x01,  # entity instance
            0x67,  # init: scanning, events, type; events + scanning enabled
            0x48,  # capabilities: auto re-arm, thresholds readable/settable
            sensor.sensor_type,
            0x01,  # event/reading type: threshold
            0x00, 0x00,  # assertion event mask
            0x00, 0x00,  # deassertion event mask
            0x12, 0x12,  # readable/settable thresholds: lower critical, upper non-crit + crit
            0x00,  # units 1: unsigned, no rate, no percentage
            sensor.unit,
            0x00,  # modifier unit
            0x00,  # linearization: linear
            sensor.m & 0xFF,
            (sensor.m >> 8) & 0x03,  # M MS bits, tolerance 0
            0x00,  # B
            0x00,  # B MS bits, accuracy
            0x00,  # accuracy, direction
            0x00,  # R exp, B exp
            0x01,  # analog flags: nominal reading specified
            sensor.raw,  # nominal reading
            0xFF,  # normal max
            0x00,  # normal min
            0xFF,  # sensor max
            0x00,  # sensor min
            0xFF,  # upper non-recoverable
            sensor.upper_critical,
            sensor.upper_non_critical,
            0x00,  # lower non-recoverable
            sensor.lower_critical,
            0x00,  # lower non-critical
            0x00, 0x00,  # hysteresis
            0x00, 0x00,  # reserved
            0x00,  # OEM
            0xC0 | len(name),
        ]
    ) + name
    # fmt: on
    header = bytes([0x00, 0x00, 0x51, 0x01, len(body)])  # record id assigned by the MC
    return header + body


# ------------------------------------------------------------------ config files


def _hex(data: bytes) -> str:
    return " ".join(f"0x{b:02x}" for b in data)


def build_emu(fru_path: Path | None, fru_size: int, sensors: Sequence[SensorSpec]) -> str:
    lines = [
        "# generated by tests/emulators/ipmi_sim.py",
        f"mc_setbmc 0x{BMC_ADDR:02x}",
        # 0x9f: chassis, SEL, SDR repository, FRU inventory and sensor device support.
        f"mc_add 0x{BMC_ADDR:02x} 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02",
        f"sel_enable 0x{BMC_ADDR:02x} 1000 0x0a",
    ]
    if fru_path is not None:
        lines.append(f'mc_add_fru_data 0x{BMC_ADDR:02x} 0 {fru_size} file 0 "{fru_path}"')
    for sensor in sensors:
        lines += [
            f"sensor_add 0x{BMC_ADDR:02x} 0 {sensor.number} {sensor.sensor_type} 0x01",
            f"main_sdr_add 0x{BMC_ADDR:02x} {_hex(build_full_sdr(sensor))}",
            f"sensor_set_value 0x{BMC_ADDR:02x} 0 {sensor.number} {sensor.raw} 0",
            # Scanning must be on, or Get Sensor Reading reports "reading unavailable".
            f"sensor_set_event_support 0x{BMC_ADDR:02x} 0 {sensor.number} enable scanning"
            " per-state 000000000000000 000000000000000 000000000000000 000000000000000",
        ]
    lines.append(f"mc_enable 0x{BMC_ADDR:02x}")
    return "\n".join(lines) + "\n"


def build_lan_conf(
    *, name: str, port: int, username: str, password: str, chassis_control: Path
) -> str:
    return f"""# generated by tests/emulators/ipmi_sim.py
name "{name}"
set_working_mc 0x{BMC_ADDR:02x}
  startlan 1
    addr {HOST} {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{chassis_control}"
  user 2 true "{username}" "{password}" admin 10 none md2 md5 straight
"""


CHASSIS_CONTROL = """#!/bin/sh
# chassis_control for ipmi_sim (generated by tests/emulators/ipmi_sim.py).
# Called as: get power | get boot | set power 0|1 | set reset 1 | set shutdown 1
#            | set boot pxe|default|cdrom|bios|none
state='{state}'
printf '%s\\n' "$*" >> "$state/calls.log"
put() {{ printf '%s\\n' "$2" > "$state/$1.tmp" && mv -f "$state/$1.tmp" "$state/$1"; }}
case "$1:$2" in
    get:power)
        if [ -s "$state/power" ]; then v=$(cat "$state/power"); else v=0; fi
        echo "power:$v" ;;
    get:boot)
        if [ -s "$state/boot" ]; then v=$(cat "$state/boot"); else v=default; fi
        echo "boot:$v" ;;
    set:power) put power "$3" ;;
    set:boot) put boot "$3" ;;
    set:reset) printf 'reset\\n' >> "$state/resets" ;;
    set:shutdown)  # soft-off (ACPI): the "OS" complies unless told to ignore it
        [ -e "$state/ignore_soft_off" ] || put power 0 ;;
esac
exit 0
"""


def _check_conf_value(label: str, value: str, limit: int) -> None:
    if not value or len(value.encode()) > limit or any(c in value for c in "\"'\\\n"):
        raise ValueError(f"{label} must be 1..{limit} bytes without quotes/backslashes")


# ------------------------------------------------------------------------ IpmiSim


@dataclass
class IpmiSim(EmulatedBmc):
    """One ``ipmi_sim`` BMC. Use as a context manager or call ``close()``."""

    _port_kind = socket.SOCK_DGRAM  # IPMI over LAN is UDP (a class attribute, not a field)

    workdir: Path
    username: str = "admin"
    password: str = "password"
    port: int = 0  # 0: pick a free UDP port on first start
    power_on: bool = False  # initial chassis power
    fru: FruInfo | None = field(default_factory=FruInfo)
    sensors: Sequence[SensorSpec] = DEFAULT_SENSORS
    name: str = "bmc"
    ready_timeout: float = 20.0
    host: str = field(default=HOST, init=False)
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_conf_value("username", self.username, 16)
        _check_conf_value("password", self.password, 20)
        self.workdir = Path(self.workdir).resolve()
        for path in (self.workdir, self.chassis_dir, self.sim_state_dir):
            if "'" in str(path) or '"' in str(path):
                raise ValueError(f"path must not contain quotes: {path}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.chassis_dir.mkdir(exist_ok=True)
        self.sim_state_dir.mkdir(exist_ok=True)
        if not (self.chassis_dir / "power").exists():
            (self.chassis_dir / "power").write_text("1\n" if self.power_on else "0\n")
        script = self.workdir / "chassis_control.sh"
        script.write_text(CHASSIS_CONTROL.format(state=self.chassis_dir))
        script.chmod(0o755)
        fru_path: Path | None = None
        fru_size = 0
        if self.fru is not None:
            fru_data = build_fru(self.fru)
            fru_path = self.workdir / "fru0.bin"
            fru_path.write_bytes(fru_data)
            fru_size = len(fru_data)
        (self.workdir / "bmc.emu").write_text(build_emu(fru_path, fru_size, self.sensors))

    # ---------------------------------------------------------------- paths

    @property
    def chassis_dir(self) -> Path:
        return self.workdir / "chassis"

    @property
    def sim_state_dir(self) -> Path:
        return self.workdir / "sim-state"

    @property
    def log_path(self) -> Path:
        return self.workdir / "ipmi_sim.log"

    # --------------------------------------------------------------- client

    def pyghmi_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pyghmi.ipmi.command.Command`` (bytes credentials)."""
        return {
            "bmc": self.host,
            "port": self.port,
            "userid": self.username.encode(),
            "password": self.password.encode(),
        }

    def ipmitool(
        self, *args: str, timeout: float = 30.0, check: bool = True, retries: int = 3
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ipmitool -I lanplus -C 3`` against this BMC (``-C 3``: ~30 ms, not ~10 s)."""
        argv = [
            IPMITOOL, "-I", "lanplus", "-C", "3", "-H", self.host, "-p", str(self.port),
            "-U", self.username, "-P", self.password, "-N", "1", "-R", str(retries), *args,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)

    # ----------------------------------------------------------- chassis state

    @property
    def power(self) -> str:
        """``"on"``/``"off"``: what chassis_control last recorded."""
        raw = (self.chassis_dir / "power").read_text().strip()
        return "on" if raw == "1" else "off"

    @property
    def boot_device(self) -> str | None:
        """Last ``set boot`` argument (``pxe``, ``default``, ``cdrom``, ``bios``), None if never set."""
        path = self.chassis_dir / "boot"
        return path.read_text().strip() if path.exists() else None

    @property
    def chassis_calls(self) -> list[str]:
        path = self.chassis_dir / "calls.log"
        return path.read_text().splitlines() if path.exists() else []

    @property
    def resets(self) -> int:
        path = self.chassis_dir / "resets"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def ignore_soft_off(self, ignore: bool = True) -> None:
        """Make ``chassis power soft`` (pyghmi ``shutdown``) a no-op, like an OS that ignores
        ACPI; by default soft-off powers the chassis off at once."""
        flag = self.chassis_dir / "ignore_soft_off"
        if ignore:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def set_power_out_of_band(self, on: bool) -> None:
        """An operator's ``ipmitool chassis power on|off`` (real RMCP+ session)."""
        self.ipmitool("chassis", "power", "on" if on else "off")

    # --------------------------------------------------------------- process

    def _launch(self) -> ManagedProcess:
        lan_conf = self.workdir / "lan.conf"
        lan_conf.write_text(
            build_lan_conf(
                name=self.name,
                port=self.port,
                username=self.username,
                password=self.password,
                chassis_control=self.workdir / "chassis_control.sh",
            )
        )
        emu = self.workdir / "bmc.emu"
        argv = [IPMI_SIM, "-c", str(lan_conf), "-f", str(emu), "-s", str(self.sim_state_dir)]
        proc = ManagedProcess(
            [*argv, "-n"],
            log_path=self.log_path,
            cwd=self.workdir,
            env={**os.environ, "LC_ALL": "C"},
        )
        proc.start()
        return proc

    def answers_ping(self) -> bool:
        """RMCP/ASF presence ping: True when the UDP port answers with a pong."""
        ping = bytes([0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x01, 0x00, 0x00])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            try:
                sock.connect((self.host, self.port))
                sock.send(ping)
                reply = sock.recv(512)
            except OSError:  # refused (not bound yet) or timeout
                return False
        return len(reply) > 8 and reply[8] == 0x40

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None

        def answering() -> bool:
            if not proc.running:
                raise RuntimeError(f"ipmi_sim exited with {proc.returncode}")
            return self.answers_ping()

        poll_until(answering, timeout=self.ready_timeout, interval=0.02, what="ipmi_sim ping")

        # The UDP socket is up; make sure a full RMCP+ session and chassis_control work.
        def session_ok() -> bool:
            if not proc.running:
                raise RuntimeError(f"ipmi_sim exited with {proc.returncode}")
            return (
                self.ipmitool("chassis", "power", "status", check=False, retries=1).returncode == 0
            )

        poll_until(session_ok, timeout=self.ready_timeout, interval=0.05, what="ipmi_sim session")
