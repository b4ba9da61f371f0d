"""The ``ovs`` switch driver: Open vSwitch through ``ovs-vsctl``/``ovs-ofctl``.

Locally (no ``address``): the tools run on this host, optionally under ``ip netns exec
settings["netns"]``, against ``settings["ovsdb"]`` (a unix socket path) if given. Remotely
(``address`` set): over SSH (paramiko; password or private key), one connection per session
and one ``exec`` per batch. ``settings["bridge"]`` names the bridge (for ``ovs-ofctl``);
``rundir`` where its ``.mgmt`` socket is (default: the ``ovsdb`` socket's directory);
``known_hosts`` a file that pins the SSH host key (without it any host key is accepted).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from workers.switches import ovscmd, policy, ssh
from workers.switches.base import ErrorKind, PortConfig, SwitchConn, SwitchError, classified
from workers.switches.locks import switch_lock

NETNS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Runner(Protocol):
    def run(self, commands: Sequence[Sequence[str]]) -> str:
        """Run ``commands`` in order, stopping at the first failure; the stdout."""
        ...


class LocalRunner:
    def __init__(self, conn: SwitchConn) -> None:
        self.conn = conn
        netns = conn.settings.get("netns")
        self.prefix = ["ip", "netns", "exec", netns] if netns else []

    def run(self, commands: Sequence[Sequence[str]]) -> str:
        out = []
        for argv in commands:
            try:
                proc = subprocess.run(
                    [*self.prefix, *argv],
                    capture_output=True,
                    text=True,
                    timeout=self.conn.timeout + 5,
                )
            except subprocess.TimeoutExpired:
                raise SwitchError(
                    f"switch {self.conn.name}: {argv[0]} timed out", ErrorKind.UNREACHABLE
                ) from None
            except FileNotFoundError as exc:
                raise SwitchError(
                    f"switch {self.conn.name}: {exc.filename} is not installed",
                    ErrorKind.UNREACHABLE,
                ) from None
            if proc.returncode != 0:
                raise ovscmd.classify(self.conn, proc.stderr, proc.returncode)
            out.append(proc.stdout)
        return "".join(out)


class SshRunner:
    """One paramiko connection; each :meth:`run` is one ``exec`` (commands joined by &&)."""

    def __init__(self, conn: SwitchConn) -> None:
        import paramiko

        self.conn = conn
        self.client = paramiko.SSHClient()
        known = conn.settings.get("known_hosts")
        if known:
            self.client.load_host_keys(known)
            self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            self.client.connect(
                conn.address or "",
                port=conn.port or 22,
                username=conn.username,
                password=conn.password,
                pkey=ssh.load_pkey(conn.private_key) if conn.private_key else None,
                timeout=conn.timeout,
                banner_timeout=conn.timeout,
                auth_timeout=conn.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except SwitchError:
            self.client.close()
            raise
        except Exception as exc:
            self.client.close()
            raise ssh.classify(conn, exc) from None

    def run(self, commands: Sequence[Sequence[str]]) -> str:
        line = " && ".join(shlex.join(argv) for argv in commands)
        try:
            _, stdout, stderr = self.client.exec_command(line, timeout=self.conn.timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            rc = stdout.channel.recv_exit_status()
        except Exception as exc:
            raise ssh.classify(self.conn, exc, "command") from None
        if rc != 0:
            raise ovscmd.classify(self.conn, err, rc)
        return out

    def close(self) -> None:
        self.client.close()


class OvsSession:
    def __init__(self, conn: SwitchConn, runner: Runner) -> None:
        self.conn = conn
        self.runner = runner
        self.transactions = 0  # ovs-vsctl transactions sent (tests assert one per batch)

    def apply(self, changes: Sequence[PortConfig]) -> None:
        if not changes:
            return
        commands = ovscmd.apply_commands(self.conn.settings, self.conn.timeout, changes)
        with classified(self.conn, "apply"):
            self.runner.run(commands)
        self.transactions += 1

    def read(self, ports: Sequence[str]) -> dict[str, PortConfig]:
        if not ports:
            return {}
        argv = ovscmd.read_command(self.conn.settings, self.conn.timeout, ports)
        with classified(self.conn, "read"):
            return ovscmd.parse_read(self.runner.run([argv]), ports)


class OvsDriver:
    name = "ovs"
    secret_fields: tuple[str, ...] = ("password", "private_key")

    def validate(self, conn: SwitchConn) -> None:
        policy.validate_settings(conn)
        settings: dict[str, Any] = conn.settings
        bridge = settings.get("bridge")
        if not isinstance(bridge, str) or not bridge or any(c.isspace() for c in bridge):
            raise SwitchError(
                "settings.bridge (the OVS bridge name) is required", ErrorKind.INVALID
            )
        for key in ("ovsdb", "rundir"):
            if settings.get(key) is not None and not isinstance(settings[key], str):
                raise SwitchError(f"settings.{key} must be a path", ErrorKind.INVALID)
        netns = settings.get("netns")
        if netns is not None and (not isinstance(netns, str) or not NETNS_RE.match(netns)):
            raise SwitchError("settings.netns must be a network namespace name", ErrorKind.INVALID)
        if conn.address:
            if netns:
                raise SwitchError("settings.netns is for local switches only", ErrorKind.INVALID)
            ssh.validate_login(conn)

    @contextlib.contextmanager
    def session(self, conn: SwitchConn) -> Iterator[OvsSession]:
        self.validate(conn)
        with switch_lock(conn):
            if not conn.address:
                yield OvsSession(conn, LocalRunner(conn))
                return
            with classified(conn, "SSH login"):
                runner = SshRunner(conn)
            try:
                yield OvsSession(conn, runner)
            finally:
                runner.close()


def create_driver() -> OvsDriver:
    return OvsDriver()
