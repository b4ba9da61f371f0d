"""Pytest fixtures starting real BMC emulators (see ``tests/emulators``).

- ``ipmi_bmc``: a fresh ``IpmiSim`` per test (power off, own UDP port and state).
- ``ipmi_bmc_factory``: ``make(**IpmiSim kwargs)`` for several BMCs in one test.
- ``redfish_bmc``: a fresh ``SushyEmulator`` per test (one system, power off; ~0.6 s start).
- ``redfish_bmc_shared``: one ``SushyEmulator`` per test module: do not assume its power state.
- ``redfish_bmc_factory``: ``make(**SushyEmulator kwargs)``.

Talk pyghmi to an ``ipmi_bmc`` through ``tests.emulators.pyghmi_child.PyghmiChild``, not a
``Command`` in the pytest process: a process that has used pyghmi's IPMI client cannot fork
children that use it (they hang), and the drivers fork per BMC call.

When ``ipmi_sim``/``ipmitool`` or ``sushy-emulator`` are missing the tests using them are
skipped, unless ``BMS_REQUIRE_BMC`` is set (non-empty, not ``0``; CI sets ``1``): then they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators import ipmi_sim as _ipmi
from tests.emulators import sushy as _sushy
from tests.emulators.ipmi_sim import IpmiSim
from tests.emulators.sushy import SushyEmulator

__all__ = [
    "ipmi_bmc",
    "ipmi_bmc_factory",
    "redfish_bmc",
    "redfish_bmc_factory",
    "redfish_bmc_shared",
    "require_bmc_binaries",
]


def bmc_required() -> bool:
    return os.environ.get("BMS_REQUIRE_BMC", "") not in ("", "0")


def require_bmc_binaries(kind: str) -> None:
    """Skip (or fail under BMS_REQUIRE_BMC) when the emulator for ``kind`` is not installed."""
    if kind == "ipmi":
        ok = _ipmi.binaries_available()
        what = f"{_ipmi.IPMI_SIM} and {_ipmi.IPMITOOL} (Debian: openipmi, ipmitool)"
    elif kind == "redfish":
        ok = _sushy.binaries_available()
        what = f"{_sushy.emulator_path()} (pip: sushy-tools)"
    else:
        raise ValueError(kind)
    if ok:
        return
    if bmc_required():
        pytest.fail(f"BMS_REQUIRE_BMC is set but not installed: {what}", pytrace=False)
    pytest.skip(f"{what} not installed")


@pytest.fixture
def ipmi_bmc_factory(tmp_path: Path) -> Iterator[Callable[..., IpmiSim]]:
    require_bmc_binaries("ipmi")
    sims: list[IpmiSim] = []

    def make(**kwargs: Any) -> IpmiSim:
        sim = IpmiSim(tmp_path / f"ipmi-{len(sims)}", **kwargs)
        sims.append(sim)
        return sim.start()

    try:
        yield make
    finally:
        for sim in sims:
            sim.close()


@pytest.fixture
def ipmi_bmc(ipmi_bmc_factory: Callable[..., IpmiSim]) -> IpmiSim:
    return ipmi_bmc_factory()


@pytest.fixture
def redfish_bmc_factory(tmp_path: Path) -> Iterator[Callable[..., SushyEmulator]]:
    require_bmc_binaries("redfish")
    emulators: list[SushyEmulator] = []

    def make(**kwargs: Any) -> SushyEmulator:
        emu = SushyEmulator(tmp_path / f"redfish-{len(emulators)}", **kwargs)
        emulators.append(emu)
        return emu.start()

    try:
        yield make
    finally:
        for emu in emulators:
            emu.close()


@pytest.fixture
def redfish_bmc(redfish_bmc_factory: Callable[..., SushyEmulator]) -> SushyEmulator:
    return redfish_bmc_factory()


@pytest.fixture(scope="module")
def redfish_bmc_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SushyEmulator]:
    require_bmc_binaries("redfish")
    emu = SushyEmulator(tmp_path_factory.mktemp("redfish-shared"))
    try:
        yield emu.start()
    finally:
        emu.close()
