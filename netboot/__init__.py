"""Per-node boot artefacts (iPXE script, DHCP host entry) and the boot endpoints."""
