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


# The name the deploy initramfs gets inside iPXE. iPXE for UEFI (before 1.21) hands initrds
# to the kernel only as files of a virtual filesystem, which Linux's EFI stub loads when its
# command line names them (``initrd=<name>``); Linux booted from BIOS ignores the argument.
INITRD_NAME = "initrd"


def ipxe_script(target: BootTarget) -> str:
    if target.kind == "ramdisk":
        kernel = f"kernel {target.kernel_url} initrd={INITRD_NAME} {target.kernel_params}"
        return (
            f"#!ipxe\n{kernel.rstrip()}\ninitrd --name {INITRD_NAME} {target.ramdisk_url}\nboot\n"
        )
    if target.kind == "local":
        # Hand over to the next boot device (the local disk) without retrying the network.
        return "#!ipxe\nsanboot --no-describe --drive 0x80 || exit\n"
    return "#!ipxe\nexit\n"
