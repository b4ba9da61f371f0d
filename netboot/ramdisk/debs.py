"""Debian packages fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``.

Nothing is installed on the host: packages land in ``cache_dir/debs`` and are unpacked
into ``cache_dir/root/<package>_<version>``; a stamp file marks a finished unpack, so a
warm cache costs no download and no extraction.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

KERNEL_META = "linux-image-amd64"


class PackageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Unpacked:
    package: str
    version: str
    root: Path


def _run(args: list[str], cwd: Path | None = None) -> str:
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise PackageError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def candidate_version(package: str) -> str:
    """The version ``apt-get download`` would fetch."""
    for line in _run(["apt-cache", "policy", package]).splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate" and value.strip() not in ("", "(none)"):
            return value.strip()
    raise PackageError(f"no installable candidate for {package} (apt-get update?)")


def kernel_package() -> str:
    """``linux-image-amd64``'s versioned dependency, e.g. ``linux-image-6.1.0-56-amd64``."""
    for line in _run(["apt-cache", "depends", KERNEL_META]).splitlines():
        kind, _, dep = line.strip().partition(": ")
        if kind == "Depends" and dep.startswith("linux-image-"):
            return dep.strip()
    raise PackageError(f"{KERNEL_META} has no linux-image-* dependency")


def fetch(package: str, cache_dir: Path) -> Unpacked:
    """Download (if needed) and unpack (if needed) ``package``'s candidate version."""
    version = candidate_version(package)
    safe = version.replace(":", "%3a")
    debs = cache_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = debs / f"{package}_{safe}_amd64.deb"
    if not deb.exists():
        found = list(debs.glob(f"{package}_{safe}_*.deb"))
        if not found:
            # apt drops privileges to _apt when it can; a root-owned cache only earns a warning.
            _run(["apt-get", "download", "-q", f"{package}={version}"], cwd=debs)
            found = list(debs.glob(f"{package}_{safe}_*.deb"))
        if not found:
            raise PackageError(f"apt-get download {package}={version} left no .deb in {debs}")
        deb = found[0]
    root = cache_dir / "root" / f"{package}_{safe}"
    stamp = root.with_name(root.name + ".done")
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        stamp.write_text(deb.name + "\n")
    return Unpacked(package, version, root)
