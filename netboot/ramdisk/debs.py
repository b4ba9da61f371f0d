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


def candidate_versions(packages: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The versions ``apt-get download`` would fetch, from one ``apt-cache policy`` call."""
    found: dict[str, str] = {}
    current = ""
    for line in _run(["apt-cache", "policy", *packages]).splitlines():
        if line and not line[0].isspace():
            current = line.rstrip(":").split(":")[0]  # "libc6:" or "libc6:amd64:"
            continue
        key, _, value = line.strip().partition(":")
        if key == "Candidate" and value.strip() not in ("", "(none)"):
            found.setdefault(current, value.strip())
    missing = [p for p in packages if p not in found]
    if missing:
        raise PackageError(f"no installable candidate for {', '.join(missing)} (apt-get update?)")
    return found


def candidate_version(package: str) -> str:
    """The version ``apt-get download`` would fetch."""
    return candidate_versions([package])[package]


def kernel_package() -> str:
    """``linux-image-amd64``'s versioned dependency, e.g. ``linux-image-6.1.0-56-amd64``."""
    for line in _run(["apt-cache", "depends", KERNEL_META]).splitlines():
        kind, _, dep = line.strip().partition(": ")
        if kind == "Depends" and dep.startswith("linux-image-"):
            return dep.strip()
    raise PackageError(f"{KERNEL_META} has no linux-image-* dependency")


def fetch_all(packages: list[str] | tuple[str, ...], cache_dir: Path) -> list[Unpacked]:
    """:func:`fetch` for several packages, with one ``apt-cache`` call for their versions."""
    versions = candidate_versions(packages)
    return [fetch(p, cache_dir, versions[p]) for p in packages]


def fetch(package: str, cache_dir: Path, version: str | None = None) -> Unpacked:
    """Download (if needed) and unpack (if needed) ``package`` at ``version`` (default: its
    candidate version)."""
    version = version or candidate_version(package)
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
