"""``bms ramdisk build``: register with ``main.add_command(ramdisk)`` in portal/cli.py."""

from __future__ import annotations

import time
from pathlib import Path

import click

from portal.core.config import Settings


def default_out_dir() -> Path:
    return Settings.from_env().var_dir / "netboot" / "artefacts"


def default_cache_dir() -> Path:
    return Settings.from_env().var_dir / "cache" / "debian"


# The Debian package cache, shared by ``bms ramdisk build`` and ``bms lab image``.
cache_option = click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Package cache (default: $BMS_VAR_DIR/cache/debian).",
)


@click.group("ramdisk")
def ramdisk() -> None:
    """The deploy ramdisk (kernel + initramfs with the shell agent)."""


@ramdisk.command("build")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (default: $BMS_VAR_DIR/netboot/artefacts).",
)
@cache_option
def ramdisk_build(out_dir: Path | None, cache_dir: Path | None) -> None:
    """Build deploy.kernel and deploy.initramfs from Debian packages."""
    from netboot.ramdisk.build import build

    t0 = time.monotonic()
    files = build(out_dir or default_out_dir(), cache_dir or default_cache_dir())
    for p in (files.kernel, files.initramfs):
        click.echo(f"{p} ({p.stat().st_size:,} bytes)")
    click.echo(f"built in {time.monotonic() - t0:.1f}s")
