"""Which switch drivers exist: built-ins are imported by module path on first use, so the
interface module (:mod:`workers.switches.base`) never imports an implementation."""

from __future__ import annotations

import importlib

from workers.switches.base import ErrorKind, SwitchDriver, SwitchError

# name -> module whose ``create_driver()`` builds it.
BUILTIN: dict[str, str] = {
    "fake": "workers.switches.fake",
    "ovs": "workers.switches.ovs",
    "netmiko": "workers.switches.netmiko",
}


def switch_drivers() -> list[str]:
    return sorted(BUILTIN)


def get_switch_driver(name: str) -> SwitchDriver:
    """A new driver object (the fake's in-memory state lives on it)."""
    module = BUILTIN.get(name)
    if module is None:
        raise SwitchError(
            f"unknown switch driver {name!r}; enabled: {', '.join(switch_drivers())}",
            ErrorKind.UNSUPPORTED,
        )
    driver: SwitchDriver = importlib.import_module(module).create_driver()
    return driver


def secret_fields() -> frozenset[str]:
    """The secret connection/settings keys of every driver (a switch may change driver)."""
    return frozenset(f.lower() for name in BUILTIN for f in get_switch_driver(name).secret_fields)
