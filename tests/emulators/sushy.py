"""sushy-tools' ``sushy-emulator`` as a real Redfish BMC on https://127.0.0.1:PORT.

Fake systems driver (no libvirt), TLS with a freshly generated self-signed certificate
(SAN ``127.0.0.1`` and ``localhost``; ``.ca_path`` is the CA bundle for clients), HTTP Basic
auth from an htpasswd file (bcrypt). Everything is set in one config file passed through
``SUSHY_EMULATOR_CONFIG``; the fake driver's state (power, boot device, pending power
changes) lives in sqlite files under ``<workdir>/state`` so ``stop()``/``start()`` keep it.

What the fake driver serves (sushy-tools 2.2.0): Id = the system UUID, Name, PowerState,
Boot (BootSourceOverrideEnabled always ``Continuous``, Target from the driver, Mode from the
system's ``boot_mode``, default ``UEFI``), EthernetInterfaces (one per configured MAC, Id = the
MAC), Storage from ``SUSHY_EMULATOR_STORAGE``/``SUSHY_EMULATOR_DRIVES`` (static config, written
here per system). It has no Processors, no SimpleStorage, no BIOS, no memory/CPU totals:
``ProcessorSummary``/``MemorySummary`` carry only a Status.

Power changes are applied 1-11 s (random) after the Reset action, on the next read;
``wait_power()`` polls. ``power_delay=N`` starts the emulator through a tiny launcher that
fixes that delay to N seconds (the apply time is ``int(time.time()) + N``, so 0 <= lag <= N);
the default ``None`` runs the unmodified ``sushy-emulator`` console script.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netboot.lab.procs import poll_until
from tests.emulators._process import EmulatedBmc, ManagedProcess

HOST = "127.0.0.1"


def emulator_path() -> Path:
    """``sushy-emulator`` next to the running interpreter (the venv's bin dir)."""
    return Path(sys.executable).parent / "sushy-emulator"


def binaries_available() -> bool:
    return emulator_path().exists()


# ------------------------------------------------------------------------ TLS


def write_self_signed_cert(cert_path: Path, key_path: Path, *, days: int = 2) -> None:
    """A self-signed CA:TRUE certificate for 127.0.0.1/localhost (usable as its own CA bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bms-test-redfish")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_htpasswd(path: Path, users: dict[str, str], *, rounds: int = 4) -> None:
    """Apache-style ``user:$2b$...`` lines. The emulator runs bcrypt.checkpw on EVERY request,
    so the cost is kept at the minimum (4): ~1 ms instead of ~250 ms for the default 12."""
    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=rounds)).decode()}"
        for user, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


# -------------------------------------------------------------------- systems


@dataclass(frozen=True)
class Drive:
    id: str
    name: str
    capacity_bytes: int
    protocol: str = "SATA"


@dataclass(frozen=True)
class FakeSystem:
    """One entry of ``SUSHY_EMULATOR_FAKE_SYSTEMS`` plus its static Storage/Drives config."""

    uuid: str
    name: str
    macs: tuple[str, ...]
    power_state: str = "Off"  # initial; "On"/"Off"
    boot_mode: str = "UEFI"  # "UEFI"/"Legacy"
    drives: tuple[Drive, ...] = ()
    storage_id: str = "1"

    def fake_system(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "power_state": self.power_state,
            "boot_mode": self.boot_mode,
            "external_notifier": False,
            "nics": [{"mac": mac} for mac in self.macs],
        }


DEFAULT_SYSTEM = FakeSystem(
    uuid="5e1c2a8b-4f3d-4b6e-9a1c-7d2e3f4a5b6c",
    name="bms-node-0",
    macs=("52:54:00:12:34:01", "52:54:00:12:34:02"),
    drives=(
        Drive(id="disk-0", name="Disk 0", capacity_bytes=480_103_981_056),
        Drive(id="disk-1", name="Disk 1", capacity_bytes=1_920_383_410_176, protocol="SAS"),
    ),
)


def build_config(
    *,
    port: int,
    cert: Path,
    key: Path,
    auth_file: Path,
    state_dir: Path,
    systems: Sequence[FakeSystem],
) -> str:
    storage: dict[str, list[dict[str, Any]]] = {}
    drives: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for system in systems:
        if not system.drives:
            continue
        storage[system.uuid] = [
            {
                "Id": system.storage_id,
                "Name": "Local Storage Controller",
                "StorageControllers": [
                    {"MemberId": "0", "Name": "Integrated RAID", "SpeedGbps": 12}
                ],
                "Drives": [d.id for d in system.drives],
            }
        ]
        drives[(system.uuid, system.storage_id)] = [
            {
                "Id": d.id,
                "Name": d.name,
                "CapacityBytes": d.capacity_bytes,
                "Protocol": d.protocol,
            }
            for d in system.drives
        ]
    settings: dict[str, Any] = {
        "SUSHY_EMULATOR_LISTEN_IP": HOST,
        "SUSHY_EMULATOR_LISTEN_PORT": port,
        "SUSHY_EMULATOR_SSL_CERT": str(cert),
        "SUSHY_EMULATOR_SSL_KEY": str(key),
        "SUSHY_EMULATOR_AUTH_FILE": str(auth_file),
        "SUSHY_EMULATOR_STATE_DIR": str(state_dir),
        "SUSHY_EMULATOR_FAKE_DRIVER": True,
        "SUSHY_EMULATOR_FAKE_SYSTEMS": [s.fake_system() for s in systems],
        "SUSHY_EMULATOR_STORAGE": storage,
        "SUSHY_EMULATOR_DRIVES": drives,
        "SUSHY_EMULATOR_FEATURE_SET": "full",
        "EXTERNAL_NOTIFICATION_URL": "http://127.0.0.1:9",  # never used: notifier off
    }
    body = "\n".join(f"{k} = {v!r}" for k, v in settings.items())
    return f"# generated by tests/emulators/sushy.py (read by flask Config.from_pyfile)\n{body}\n"


_LAUNCHER = """\
import random, sys
from sushy_tools.emulator.resources.systems import fakedriver

class _FixedDelay:
    @staticmethod
    def randint(a, b):
        return {delay}

fakedriver.random = _FixedDelay
from sushy_tools.emulator.main import main
sys.exit(main())
"""


# ------------------------------------------------------------- SushyEmulator


@dataclass
class SushyEmulator(EmulatedBmc):
    """One ``sushy-emulator`` process. Use as a context manager or call ``close()``."""

    workdir: Path
    username: str = "admin"
    password: str = "password"
    systems: Sequence[FakeSystem] = (DEFAULT_SYSTEM,)
    port: int = 0  # 0: pick a free TCP port on first start
    power_delay: int | None = None  # None: upstream random 1-11 s
    ready_timeout: float = 30.0
    host: str = field(default=HOST, init=False)
    startup_seconds: float = field(default=0.0, init=False)
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.systems:
            raise ValueError("at least one system")
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        if not self.ca_path.exists():
            write_self_signed_cert(self.ca_path, self.key_path)
        write_htpasswd(self.auth_file, {self.username: self.password})

    # ---------------------------------------------------------------- paths

    @property
    def ca_path(self) -> Path:
        """The server certificate, self-signed: pass it as ``verify=`` (CA bundle)."""
        return self.workdir / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.workdir / "key.pem"

    @property
    def auth_file(self) -> Path:
        return self.workdir / "htpasswd"

    @property
    def config_path(self) -> Path:
        return self.workdir / "emulator.conf"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def log_path(self) -> Path:
        return self.workdir / "sushy-emulator.log"

    # -------------------------------------------------------------- identity

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def system(self) -> FakeSystem:
        return self.systems[0]

    @property
    def system_id(self) -> str:
        """Redfish Id of the first system: the fake driver uses the UUID."""
        return self.system.uuid

    @property
    def system_path(self) -> str:
        return f"/redfish/v1/Systems/{self.system_id}"

    @property
    def macs(self) -> tuple[str, ...]:
        return self.system.macs

    def sushy_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``sushy.Sushy`` (base_url, credentials, CA bundle)."""
        return {
            "base_url": self.url,
            "username": self.username,
            "password": self.password,
            "verify": str(self.ca_path),
        }

    # ----------------------------------------------------------- HTTP helpers

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("auth", (self.username, self.password))
        kwargs.setdefault("verify", str(self.ca_path))
        kwargs.setdefault("timeout", 10)
        return requests.request(method, self.url + path, **kwargs)

    def get_system(self, system_id: str | None = None) -> dict[str, Any]:
        resp = self.request("GET", f"/redfish/v1/Systems/{system_id or self.system_id}")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def power_state(self, system_id: str | None = None) -> str:
        """Redfish ``PowerState`` (``"On"``/``"Off"``) read now over HTTPS."""
        return str(self.get_system(system_id)["PowerState"])

    @property
    def power(self) -> str:
        """``"on"``/``"off"`` of the first system (a reading also applies due changes)."""
        return self.power_state().lower()

    def reset(self, reset_type: str, system_id: str | None = None) -> None:
        """POST ComputerSystem.Reset (On, ForceOff, GracefulShutdown, ForceRestart, ...)."""
        sid = system_id or self.system_id
        resp = self.request(
            "POST",
            f"/redfish/v1/Systems/{sid}/Actions/ComputerSystem.Reset",
            json={"ResetType": reset_type},
        )
        resp.raise_for_status()

    def set_power_out_of_band(self, on: bool, *, wait: bool = False, timeout: float = 20) -> None:
        """An operator's power change: Reset On/ForceOff; with ``wait`` poll until applied."""
        self.reset("On" if on else "ForceOff")
        if wait:
            self.wait_power("on" if on else "off", timeout=timeout)

    def wait_power(self, state: str, timeout: float = 20.0, system_id: str | None = None) -> None:
        """Poll until PowerState is ``state`` (``on``/``off``, any case); TimeoutError after."""
        want = state.lower()
        poll_until(
            lambda: self.power_state(system_id).lower() == want,
            timeout=timeout,
            interval=0.25,
            what=f"PowerState {state}",
        )

    # --------------------------------------------------------------- process

    def _argv(self) -> list[str]:
        if self.power_delay is None:
            return [str(emulator_path())]
        if not 0 <= self.power_delay <= 60:
            raise ValueError("power_delay must be 0..60 s")
        return [sys.executable, "-c", _LAUNCHER.format(delay=int(self.power_delay))]

    def _launch(self) -> ManagedProcess:
        self.config_path.write_text(
            build_config(
                port=self.port,
                cert=self.ca_path,
                key=self.key_path,
                auth_file=self.auth_file,
                state_dir=self.state_dir,
                systems=self.systems,
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUSHY_EMULATOR_")}
        env["SUSHY_EMULATOR_CONFIG"] = str(self.config_path)
        env["PYTHONUNBUFFERED"] = "1"
        proc = ManagedProcess(self._argv(), log_path=self.log_path, env=env, cwd=self.workdir)
        proc.start()
        return proc

    def _lost_port(self, log_tail: str) -> bool:
        return "Address already in use" in log_tail

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None

        def serving() -> bool:
            if not proc.running:
                raise RuntimeError(f"sushy-emulator exited with {proc.returncode}")
            try:
                # An authenticated resource: proves TLS, auth file and the fake driver load.
                resp = self.request("GET", self.system_path, timeout=2)
            except requests.RequestException:
                return False
            return resp.status_code == 200

        started = time.monotonic()
        poll_until(serving, timeout=self.ready_timeout, interval=0.05, what="sushy-emulator")
        self.startup_seconds = time.monotonic() - started
