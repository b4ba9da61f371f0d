"""The QEMU lab: VMs that netboot through iPXE, with IPMI BMCs on 127.0.0.1 (``bms lab``)."""
