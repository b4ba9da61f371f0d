"""The deploy ramdisk: Debian kernel + busybox initramfs with the shell agent."""
