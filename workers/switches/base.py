"""The switch driver interface: small, like the BMC drivers', with a cheap ``validate()``.

Drivers never touch the database: they get a :class:`SwitchConn` (plain data, secrets
already decrypted) and a batch of :class:`PortConfig` changes, all applied in one
session (one login). This module imports no implementation: the registry loads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from portal.core.secrets import REDACTED, redact, scrub, secret_values
from workers.drivers.base import DriverError, ErrorKind

__all__ = [
    "DriverError",
    "ErrorKind",
    "PortConfig",
    "SwitchConn",
    "SwitchDriver",
    "SwitchError",
    "SwitchSession",
]

Mode = Literal["access", "trunk"]
MIN_VLAN, MAX_VLAN = 1, 4094


@dataclass(frozen=True)
class PortConfig:
    """The wanted (or actual) state of one switch port.

    ``vlan``: the access VLAN, or a trunk's native (untagged) VLAN, None for none. An
    ``access`` port with ``vlan=None`` and ``enabled=False`` is "shut, VLAN untouched":
    drivers then only shut it down (what :func:`workers.switches.policy.parking` gives
    when no quarantine VLAN is set).
    """

    port: str
    mode: Mode
    vlan: int | None
    trunk_vlans: tuple[int, ...] = ()
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.port or any(c.isspace() for c in self.port):
            raise SwitchError(f"port name {self.port!r} is empty or has spaces", ErrorKind.INVALID)
        if self.mode not in ("access", "trunk"):
            raise SwitchError(f"port {self.port}: mode must be access or trunk", ErrorKind.INVALID)
        if self.mode == "access" and self.vlan is None and self.enabled:
            raise SwitchError(
                f"port {self.port}: an enabled access port needs a VLAN", ErrorKind.INVALID
            )
        if self.mode == "access" and self.trunk_vlans:
            raise SwitchError(
                f"port {self.port}: an access port carries no trunk VLANs", ErrorKind.INVALID
            )
        for vlan in (self.vlan, *self.trunk_vlans):
            if vlan is not None and not (
                isinstance(vlan, int)
                and not isinstance(vlan, bool)
                and MIN_VLAN <= vlan <= MAX_VLAN
            ):
                raise SwitchError(
                    f"port {self.port}: VLAN {vlan!r} is not in {MIN_VLAN}-{MAX_VLAN}",
                    ErrorKind.INVALID,
                )
        # Order and repeats carry no meaning: keep one canonical form so equality works.
        object.__setattr__(self, "trunk_vlans", tuple(sorted(set(self.trunk_vlans))))

    @property
    def shut_only(self) -> bool:
        return not self.enabled and self.mode == "access" and self.vlan is None

    def matches(self, actual: PortConfig) -> bool:
        """Whether ``actual`` (read from the switch) is this wanted state: a port wanted
        shut with its VLAN untouched only has to be down."""
        if self.shut_only:
            return not actual.enabled
        return self == actual

    def describe(self) -> str:
        state = "" if self.enabled else " (shut)"
        if self.shut_only:
            return f"{self.port}: shut"
        if self.mode == "access":
            return f"{self.port}: access VLAN {self.vlan}{state}"
        vlans = ",".join(map(str, self.trunk_vlans)) or "none"
        return f"{self.port}: trunk native {self.vlan or 'none'} VLANs {vlans}{state}"


@dataclass(repr=False)
class SwitchConn:
    """How to reach one switch (plain data; secrets already decrypted).

    ``settings``: ``provisioning_vlan``, ``quarantine_vlan``, ``allowed_vlans`` ("100-999,1000"),
    ``allowed_ports`` / ``protected_ports`` (fnmatch patterns), ``timeout`` (seconds),
    ``save_config``, ``lock_dir`` and driver specifics (``bridge``, ``ovsdb``, ``netns``…).
    """

    switch_id: str
    name: str
    driver: str
    address: str | None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    private_key: str | None = None
    device_type: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # logs and tracebacks never show the secrets
        hidden = {k: REDACTED for k in ("password", "private_key") if getattr(self, k)}
        shown = ", ".join(f"{k}={v}" for k, v in hidden.items())
        return (
            f"SwitchConn(switch_id={self.switch_id!r}, name={self.name!r}, "
            f"driver={self.driver!r}, address={self.address!r}, port={self.port!r}, "
            f"username={self.username!r}, device_type={self.device_type!r}"
            f"{', ' + shown if shown else ''}, settings={redact(self.settings)!r})"
        )

    __str__ = __repr__

    @property
    def timeout(self) -> float:
        """Seconds one command (or the login) may take; settings ``timeout``, default 30."""
        try:
            value = float(self.settings.get("timeout") or 30.0)
        except (TypeError, ValueError):
            return 30.0
        return value if value > 0 else 30.0

    def secrets(self) -> tuple[str, ...]:
        """Every text form of this switch's secrets, longest first, to scrub from messages."""
        found = [s for s in (self.password, self.private_key) if s]
        if self.private_key:  # a key may be quoted line by line (its PEM lines)
            found += [line for line in self.private_key.splitlines() if len(line) >= 16]
        found += secret_values(self.settings)
        return tuple(sorted(set(found), key=len, reverse=True))

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets())


class SwitchSession(Protocol):
    """One login to one switch; every call in it reuses that connection."""

    def apply(self, changes: Sequence[PortConfig]) -> None:
        """Apply every change in this session; the config is saved where the vendor needs it."""
        ...

    def read(self, ports: Sequence[str]) -> dict[str, PortConfig]:
        """The actual state of ``ports`` on the switch."""
        ...


class SwitchDriver(Protocol):
    name: str
    # Connection fields and settings keys whose values are secrets (encrypted at rest,
    # redacted in every output, scrubbed from errors).
    secret_fields: tuple[str, ...]

    def validate(self, conn: SwitchConn) -> None:
        """Cheap checks (required fields, settings, device type); no connection is made.
        Raises :class:`SwitchError` of kind ``invalid``."""
        ...

    def session(self, conn: SwitchConn) -> AbstractContextManager[SwitchSession]:
        """One login for a batch of reads and changes."""
        ...


class SwitchError(DriverError):
    """A switch operation failed. ``kind``: auth, unreachable (timeouts too), rejected (the
    switch refused a command), invalid (bad connection data or settings), transient
    (busy: retrying may help), unsupported or error. Messages never carry secrets."""


@contextlib.contextmanager
def classified(conn: SwitchConn, what: str) -> Iterator[None]:
    """Re-raise any failure inside as a :class:`SwitchError` naming the switch, with the
    connection's secrets scrubbed from its message (unknown errors are kind ``error``)."""
    try:
        yield
    except SwitchError as exc:
        clean = conn.scrub(str(exc))
        if clean == str(exc):
            raise
        raise SwitchError(clean, exc.kind) from None
    except Exception as exc:
        raise SwitchError(
            conn.scrub(f"switch {conn.name}: {what} failed: {type(exc).__name__}: {exc}"),
            ErrorKind.ERROR,
        ) from None
