"""Which hardware types there are: the built-in ones by module path, imported on first use,
plus drivers registered at run time (tests, plugins). The interfaces (``base``) know none of
them, and no implementation imports this module: the dependency runs one way."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable

from portal.core.secrets import SecretFields
from workers.drivers.base import Driver, DriverError, ErrorKind, Scrubbed

BUILTIN: dict[str, str] = {
    "fake": "workers.drivers.fake:fake_driver",
    "fake-agent": "workers.drivers.fake:fake_agent_driver",
    "ipmi": "workers.drivers.ipmi:ipmi_driver",
    "redfish": "workers.drivers.redfish:redfish_driver",
}
_REGISTERED: dict[str, Callable[[], Driver]] = {}


def register_driver(name: str, factory: Callable[[], Driver]) -> None:
    _REGISTERED[name] = factory
    _secret_fields.cache_clear()


def unregister_driver(name: str) -> None:
    _REGISTERED.pop(name, None)
    _secret_fields.cache_clear()


def enabled_drivers() -> list[str]:
    return sorted(BUILTIN.keys() | _REGISTERED.keys())


def _factory(name: str) -> Callable[[], Driver]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    path = BUILTIN.get(name)
    if path is None:
        raise DriverError(
            f"unknown driver '{name}'; enabled: {', '.join(enabled_drivers())}",
            ErrorKind.UNSUPPORTED,
        )
    module, _, attr = path.partition(":")
    factory: Callable[[], Driver] = getattr(importlib.import_module(module), attr)
    return factory


def get_driver(name: str) -> Driver:
    """The hardware type ``name``, each interface wrapped so its errors carry no secret."""
    driver = _factory(name)()
    wrapped = {i: Scrubbed(getattr(driver, i)) for i in Driver.INTERFACES}
    return dataclasses.replace(driver, **wrapped)  # type: ignore[arg-type]


def secret_fields() -> SecretFields:
    """The secret keys of every driver (a node may change driver, so a key secret for one
    is secret on every node), plus the generic rule."""
    return _secret_fields()


@functools.lru_cache(maxsize=1)
def _secret_fields() -> SecretFields:
    declared = (_factory(name)().secret_fields for name in enabled_drivers())
    return SecretFields(frozenset(f.lower() for fields in declared for f in fields))
