"""Fixtures: Debian packages cached under var/cache/debian (or $BMS_TEST_DEB_CACHE)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from netboot.ramdisk.build import RamdiskFiles, build

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deb_cache() -> Path:
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip("needs apt-get and dpkg-deb (Debian)")
    path = Path(os.environ.get("BMS_TEST_DEB_CACHE", REPO / "var" / "cache" / "debian"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def ramdisk(deb_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> RamdiskFiles:
    return build(tmp_path_factory.mktemp("ramdisk"), deb_cache)


@pytest.fixture(scope="session")
def test_image(deb_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from netboot.testimage.build import build_test_image

    return build_test_image(tmp_path_factory.mktemp("testimage") / "test.raw", deb_cache)
