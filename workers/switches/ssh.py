"""SSH helpers shared by the ``ovs`` and ``netmiko`` drivers: private keys given as text,
host key checking, and how SSH failures are classified."""

from __future__ import annotations

import io
import socket
from typing import Any

from workers.switches.base import ErrorKind, SwitchConn, SwitchError


def load_pkey(text: str) -> Any:
    """A paramiko key from its text (OpenSSH or PEM; Ed25519, ECDSA or RSA)."""
    import paramiko

    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise SwitchError("private_key is not a readable Ed25519, ECDSA or RSA key", ErrorKind.INVALID)


def validate_login(conn: SwitchConn) -> None:
    if not conn.address:
        raise SwitchError("address is required", ErrorKind.INVALID)
    if not conn.username:
        raise SwitchError("username is required to log in over SSH", ErrorKind.INVALID)
    if not (conn.password or conn.private_key):
        raise SwitchError("a password or a private_key is required", ErrorKind.INVALID)
    if conn.port is not None and not (isinstance(conn.port, int) and 0 < conn.port < 65536):
        raise SwitchError("port must be a TCP port number", ErrorKind.INVALID)
    if conn.private_key:
        load_pkey(conn.private_key)
    known = conn.settings.get("known_hosts")
    if known is not None and not isinstance(known, str):
        raise SwitchError("settings.known_hosts must be a file path", ErrorKind.INVALID)


def classify(conn: SwitchConn, exc: BaseException, what: str = "SSH login") -> SwitchError:
    """Map paramiko/socket failures onto error kinds (message scrubbed of secrets)."""
    import paramiko

    where = f"{conn.address}:{conn.port or 22}"
    if isinstance(exc, paramiko.AuthenticationException):
        kind, why = ErrorKind.AUTH, "authentication failed (wrong user, password or key)"
    elif isinstance(exc, paramiko.BadHostKeyException):
        kind, why = ErrorKind.AUTH, "host key does not match known_hosts"
    elif isinstance(exc, (socket.timeout, TimeoutError)):
        kind, why = ErrorKind.UNREACHABLE, "timed out"
    elif isinstance(exc, (OSError, EOFError, paramiko.ssh_exception.NoValidConnectionsError)):
        kind, why = ErrorKind.UNREACHABLE, f"no connection ({exc})"
    elif isinstance(exc, paramiko.SSHException):
        text = str(exc)
        if "not found in known_hosts" in text:
            kind, why = ErrorKind.AUTH, "host key unknown (not in known_hosts)"
        else:
            kind, why = ErrorKind.UNREACHABLE, f"SSH failed ({text})"
    else:
        kind, why = ErrorKind.ERROR, f"{type(exc).__name__}: {exc}"
    return SwitchError(conn.scrub(f"switch {conn.name} ({where}): {what}: {why}"), kind)
