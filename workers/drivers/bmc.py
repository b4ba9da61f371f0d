"""What the BMC-backed drivers share: ``driver_info`` field checks and the call wrapper.

Every BMC operation goes through :func:`call`: it runs in a child process with a hard
deadline (:mod:`workers.drivers.isolation`), is retried on transient errors
(:mod:`workers.drivers.retry`), and any error message has the node's secrets scrubbed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, TypeVar

from portal.core.secrets import secret_values
from workers.drivers import isolation, retry
from workers.drivers.base import DriverError, ErrorKind, NodeTask

T = TypeVar("T")
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


def secrets_of(task: NodeTask) -> tuple[str, ...]:
    """Every text form of every secret in the task's driver_info (at any depth): what error
    messages of a BMC call must never contain."""
    return secret_values(task.driver_info, task.secret_keys)


def call(
    task: NodeTask,
    fn: Callable[..., T],
    *args: Any,
    label: str,
    extra_time: float = 0.0,
    policy: retry.Backoff = retry.DEFAULT,
) -> T:
    """``fn(*args)`` in a child process, within ``task.call_timeout + extra_time``."""
    one = isolation.Call(
        fn=fn,
        args=args,
        timeout=task.call_timeout + extra_time,
        secrets=secrets_of(task),
        label=f"{label} on node {task.node_id}",
    )
    return retry.retrying(lambda: isolation.run(one), policy, label=one.label)


def reject_unknown(info: dict[str, Any], prefix: str, fields: tuple[str, ...]) -> None:
    """A misspelt field (``ipmi_adress``) is an error, not a silently ignored setting."""
    unknown = sorted(k for k in info if k.startswith(prefix) and k not in fields)
    if unknown:
        raise DriverError(
            f"unknown driver_info fields {', '.join(unknown)}; "
            f"{prefix.rstrip('_')} accepts {', '.join(fields)}",
            ErrorKind.INVALID,
        )


def require(info: dict[str, Any], name: str) -> str:
    value = info.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DriverError(f"driver_info.{name} is required", ErrorKind.INVALID)
    if not isinstance(value, str):
        raise DriverError(f"driver_info.{name} must be a string", ErrorKind.INVALID)
    return value.strip()


def optional_str(info: dict[str, Any], name: str, default: str = "") -> str:
    value = info.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise DriverError(f"driver_info.{name} must be a string", ErrorKind.INVALID)
    return value


def port_number(info: dict[str, Any], name: str, default: int) -> int:
    value = info.get(name, default)
    try:
        number = int(value)
        if isinstance(value, bool) or str(number) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise DriverError(
            f"driver_info.{name} must be a port number 1-65535, not {value!r}", ErrorKind.INVALID
        ) from None
    if not 1 <= number <= 65535:
        raise DriverError(
            f"driver_info.{name} must be a port number 1-65535, not {number}", ErrorKind.INVALID
        )
    return number


def host(value: str, name: str) -> str:
    """An IP address or a DNS name; anything else is a typo the admin wants to hear about."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if HOSTNAME.match(value):
        return value
    raise DriverError(
        f"driver_info.{name} must be an IP address or a host name, not {value!r}",
        ErrorKind.INVALID,
    )


def flag(info: dict[str, Any], name: str, default: bool) -> bool:
    value = info.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise DriverError(f"driver_info.{name} must be true or false, not {value!r}", ErrorKind.INVALID)
