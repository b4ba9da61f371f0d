"""``bms lab image``: a command for the ``lab`` group of netboot/lab/cli.py; register it in
portal/cli.py with ``lab.add_command(lab_image)``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from netboot.ramdisk.cli import cache_option, default_cache_dir
from portal.core.config import Settings


@click.command("image")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output file (default: $BMS_VAR_DIR/netboot/artefacts/test-image.raw).",
)
@cache_option
@click.option(
    "--callback",
    default=None,
    help="bms_callback= for the kernel command line (fallback for meta_data.json).",
)
def lab_image(out: Path | None, cache_dir: Path | None, callback: str | None) -> None:
    """Build the tiny bootable test image (raw, MBR + FAT16 + SYSLINUX; BIOS and UEFI)."""
    from netboot.testimage.build import build_test_image

    var = Settings.from_env().var_dir
    t0 = time.monotonic()
    path = build_test_image(
        out or var / "netboot" / "artefacts" / "test-image.raw",
        cache_dir or default_cache_dir(),
        callback,
    )
    click.echo(f"{path} ({path.stat().st_size:,} bytes) in {time.monotonic() - t0:.1f}s")
