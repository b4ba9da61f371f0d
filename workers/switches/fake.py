"""The ``fake`` switch driver, for fast tests: ports live in a JSON file
(``settings["state_file"]``, locked, so separate worker processes share one switch) or,
without it, in memory on the driver object.

The state records every session (``sessions``: logins so far) and each batch applied
(``batches``: lists of port configs), so tests can assert batching. A port never set
reads as a factory-default switch port: access on VLAN 1, enabled.

Failure injection via settings: ``fail`` = "auth" | "unreachable" (at login) | "rejected"
(every apply); ``reject_ports``: fnmatch patterns whose changes the switch refuses (the
whole batch is then refused and nothing changes); ``ports``: if set, the only port names
that exist (others are refused, as a real switch does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import fnmatch
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from workers.switches import policy
from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError

DEFAULT_PORT = {"mode": "access", "vlan": 1, "trunk_vlans": [], "enabled": True}
FAILURES = {
    "auth": ErrorKind.AUTH,
    "unreachable": ErrorKind.UNREACHABLE,
    "rejected": ErrorKind.REJECTED,
}


def empty_state() -> dict[str, Any]:
    return {"ports": {}, "sessions": 0, "batches": []}


def to_config(port: str, raw: dict[str, Any]) -> PortConfig:
    return PortConfig(
        port, raw["mode"], raw["vlan"], tuple(raw.get("trunk_vlans") or ()), raw["enabled"]
    )


def to_raw(change: PortConfig) -> dict[str, Any]:
    raw = dataclasses.asdict(change)
    raw["trunk_vlans"] = list(change.trunk_vlans)
    return raw


def read_state(path: str | Path) -> dict[str, Any]:
    """A state file's content (for tests and the lab): ports, sessions, batches."""
    try:
        return dict(json.loads(Path(path).read_text() or "{}")) or empty_state()
    except FileNotFoundError:
        return empty_state()


class FakeSwitchDriver:
    name = "fake"
    secret_fields: tuple[str, ...] = ("password", "private_key")

    def __init__(self) -> None:
        self.memory: dict[str, dict[str, Any]] = {}  # switch_id -> state, without state_file

    def validate(self, conn: SwitchConn) -> None:
        policy.validate_settings(conn)
        fail = conn.settings.get("fail")
        if fail is not None and fail not in FAILURES:
            raise SwitchError(
                f"settings.fail must be one of {', '.join(FAILURES)}", ErrorKind.INVALID
            )

    @contextlib.contextmanager
    def _state(self, conn: SwitchConn) -> Iterator[dict[str, Any]]:
        """The switch's state, locked and written back when the block ends."""
        path = conn.settings.get("state_file")
        if not path:
            yield self.memory.setdefault(conn.switch_id, empty_state())
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+") as fh:
                text = fh.read()
                state = json.loads(text) if text.strip() else empty_state()
                yield state
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(state, sort_keys=True))
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def session(self, conn: SwitchConn) -> Iterator[FakeSession]:
        self.validate(conn)
        fail = conn.settings.get("fail")
        if fail in ("auth", "unreachable"):
            what = "authentication failed" if fail == "auth" else "no answer (timed out)"
            raise SwitchError(f"switch {conn.name}: {what} (injected)", FAILURES[fail])
        with self._state(conn) as state:
            state["sessions"] = state.get("sessions", 0) + 1
        yield FakeSession(self, conn)


class FakeSession:
    def __init__(self, driver: FakeSwitchDriver, conn: SwitchConn) -> None:
        self.driver = driver
        self.conn = conn

    def _refused(self, changes: Sequence[PortConfig]) -> list[str]:
        settings = self.conn.settings
        known = settings.get("ports")
        patterns = settings.get("reject_ports") or []
        refused = [c.port for c in changes if known is not None and c.port not in known]
        refused += [
            c.port for c in changes if any(fnmatch.fnmatchcase(c.port, p) for p in patterns)
        ]
        return sorted(set(refused))

    def apply(self, changes: Sequence[PortConfig]) -> None:
        if self.conn.settings.get("fail") == "rejected":
            raise SwitchError(
                f"switch {self.conn.name} rejected the commands (injected)", ErrorKind.REJECTED
            )
        refused = self._refused(changes)
        if refused:
            raise SwitchError(
                f"switch {self.conn.name} rejected the changes to {', '.join(refused)}",
                ErrorKind.REJECTED,
            )
        with self.driver._state(self.conn) as state:
            ports = state.setdefault("ports", {})
            for change in changes:
                raw = to_raw(change)
                if change.shut_only:  # shut, VLAN left as it was
                    raw = {**ports.get(change.port, DEFAULT_PORT), "enabled": False}
                ports[change.port] = {k: v for k, v in raw.items() if k != "port"}
            state.setdefault("batches", []).append([to_raw(c) for c in changes])

    def read(self, ports: Sequence[str]) -> dict[str, PortConfig]:
        known = self.conn.settings.get("ports")
        missing = [p for p in ports if known is not None and p not in known]
        if missing:
            raise SwitchError(
                f"switch {self.conn.name} has no port {', '.join(missing)}", ErrorKind.REJECTED
            )
        with self.driver._state(self.conn) as state:
            stored = state.get("ports", {})
            return {p: to_config(p, stored.get(p, DEFAULT_PORT)) for p in ports}


def create_driver() -> FakeSwitchDriver:
    return FakeSwitchDriver()
