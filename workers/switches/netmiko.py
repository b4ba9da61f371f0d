"""The ``netmiko`` switch driver: many vendors' CLIs over SSH (command sets in
:mod:`workers.switches.vendors`, chosen by ``device_type``).

One SSH login per session, the per-switch lock held for it (two workers never interleave
commands on one switch), config mode entered once per batch, then commit/save where the
vendor needs it (``settings["save_config"]``: default true). Settings: ``timeout``
(seconds per command and for the login), ``secret`` (enable password, default the login
password), ``known_hosts`` (pins the host key), ``netmiko_device_type`` (another netmiko
class for the same command set, e.g. ``cisco_ios_telnet``), ``exit_config`` (the command
that leaves config mode when the device lacks the usual one), ``fast_cli`` (default
true; false waits longer for slow CLIs).
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator, Sequence
from typing import Any

from workers.switches import policy, ssh
from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError, classified
from workers.switches.locks import switch_lock
from workers.switches.vendors import COMMAND_SETS, CommandSet

RC_RE = re.compile(r"bms-rc=(\d+)")


def _classify(conn: SwitchConn, exc: BaseException, what: str) -> SwitchError:
    from netmiko import exceptions as nmx

    if isinstance(exc, SwitchError):
        return exc
    if isinstance(exc, nmx.NetmikoAuthenticationException):
        return SwitchError(
            conn.scrub(f"switch {conn.name}: {what}: authentication failed"), ErrorKind.AUTH
        )
    if isinstance(
        exc, (nmx.NetmikoTimeoutException, nmx.ReadTimeout, socket.timeout, TimeoutError)
    ):
        return SwitchError(
            conn.scrub(f"switch {conn.name}: {what}: timed out ({exc})".split("\n")[0]),
            ErrorKind.UNREACHABLE,
        )
    if isinstance(exc, nmx.ConfigInvalidException):
        return SwitchError(
            conn.scrub(f"switch {conn.name} rejected a command: {exc}")[:500], ErrorKind.REJECTED
        )
    return ssh.classify(conn, exc, what)


class NetmikoSession:
    def __init__(self, conn: SwitchConn, device: Any, commands: CommandSet) -> None:
        self.conn = conn
        self.device = device
        self.commands = commands
        self.batches = 0

    def _check(self, output: str) -> None:
        """The device's echo of a refused command (or a non-zero ``bms-rc``) → rejected."""
        match = re.search(self.commands.error_pattern, output)
        rc = RC_RE.findall(output)
        if match or (rc and rc[-1] != "0"):
            lines = [ln for ln in output.splitlines() if re.search(self.commands.error_pattern, ln)]
            detail = "; ".join(lines[:3]) or f"exit status {rc[-1] if rc else '?'}"
            raise SwitchError(
                self.conn.scrub(f"switch {self.conn.name} rejected a command: {detail}")[:500],
                ErrorKind.REJECTED,
            )

    def _send(self, line: str) -> str:
        expect = self.commands.expect_string
        if expect is None:
            return str(self.device.send_command(line, read_timeout=self.conn.timeout))
        return str(
            self.device.send_command(
                line, read_timeout=self.conn.timeout, cmd_verify=False, expect_string=expect
            )
        )

    def apply(self, changes: Sequence[PortConfig]) -> None:
        if not changes:
            return
        lines = self.commands.render(changes, self.conn.settings)
        timeout = self.conn.timeout
        try:
            if self.commands.config_mode:
                out = self.device.send_config_set(
                    lines, exit_config_mode=False, read_timeout=timeout, cmd_verify=False
                )
                self._check(out)
                if self.commands.commit:
                    self.device.commit(read_timeout=timeout)
                exit_cmd = self.conn.settings.get("exit_config") or self.commands.exit_config
                if exit_cmd:
                    self.device.exit_config_mode(exit_config=exit_cmd)
                else:
                    self.device.exit_config_mode()
            else:
                for line in lines:
                    self._check(self._send(line))
                if self.commands.commit:
                    self._check(self._send("net commit"))
            if self.commands.save and self.conn.settings.get("save_config", True):
                self.device.save_config()
        except Exception as exc:
            raise _classify(self.conn, exc, "apply") from None
        self.batches += 1

    def read(self, ports: Sequence[str]) -> dict[str, PortConfig]:
        if not ports:
            return {}
        try:
            outputs = [
                self._send(cmd) for cmd in self.commands.read_commands(ports, self.conn.settings)
            ]
        except Exception as exc:
            raise _classify(self.conn, exc, "read") from None
        for out in outputs:
            self._check(out)
        with classified(self.conn, "read"):
            return self.commands.parse(ports, outputs)


class NetmikoDriver:
    name = "netmiko"
    secret_fields: tuple[str, ...] = ("password", "private_key", "secret")

    def validate(self, conn: SwitchConn) -> None:
        policy.validate_settings(conn)
        if conn.device_type not in COMMAND_SETS:
            raise SwitchError(
                f"device_type {conn.device_type!r} is not supported; known: "
                f"{', '.join(sorted(COMMAND_SETS))}",
                ErrorKind.INVALID,
            )
        ssh.validate_login(conn)
        override = conn.settings.get("netmiko_device_type")
        if override is not None and not isinstance(override, str):
            raise SwitchError("settings.netmiko_device_type must be text", ErrorKind.INVALID)

    def _params(self, conn: SwitchConn, commands: CommandSet) -> dict[str, Any]:
        settings = conn.settings
        params: dict[str, Any] = {
            "device_type": settings.get("netmiko_device_type") or commands.netmiko_type,
            "host": conn.address,
            "port": conn.port or 22,
            "username": conn.username,
            "password": conn.password or "",
            "secret": settings.get("secret") or conn.password or "",
            "conn_timeout": conn.timeout,
            "auth_timeout": conn.timeout,
            "banner_timeout": conn.timeout,
            "allow_agent": False,
            "use_keys": False,  # the key is passed as pkey, never read from disk
            "fast_cli": bool(settings.get("fast_cli", True)),  # False for slow CLIs
        }
        if conn.private_key:
            params["pkey"] = ssh.load_pkey(conn.private_key)
        if settings.get("known_hosts"):
            params.update(
                ssh_strict=True,
                system_host_keys=False,
                alt_host_keys=True,
                alt_key_file=settings["known_hosts"],
            )
        return params

    @contextlib.contextmanager
    def session(self, conn: SwitchConn) -> Iterator[NetmikoSession]:
        self.validate(conn)
        commands = COMMAND_SETS[str(conn.device_type)]
        with switch_lock(conn):
            try:
                from netmiko import ConnectHandler

                device = ConnectHandler(**self._params(conn, commands))
                if commands.enable:
                    device.enable()
            except Exception as exc:
                raise _classify(conn, exc, "SSH login") from None
            try:
                yield NetmikoSession(conn, device, commands)
            finally:
                with contextlib.suppress(Exception):
                    device.disconnect()


def create_driver() -> NetmikoDriver:
    return NetmikoDriver()
