"""Rendering per-node boot artefacts. Pure functions: data in, text out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BootTarget:
    """What a node should boot now: the deploy ramdisk, or its local disk."""

    kind: str  # "ramdisk" | "local" | "none"
    kernel_url: str | None = None
    ramdisk_url: str | None = None
    kernel_params: str = ""


def ipxe_script(target: BootTarget) -> str:
    if target.kind == "ramdisk":
        return (
            f"#!ipxe\nkernel {target.kernel_url} {target.kernel_params}".rstrip()
            + "\n"
            + f"initrd {target.ramdisk_url}\n"
            + "boot\n"
        )
    if target.kind == "local":
        # Hand over to the next boot device (the local disk) without retrying the network.
        return "#!ipxe\nsanboot --no-describe --drive 0x80 || exit\n"
    return "#!ipxe\nexit\n"
