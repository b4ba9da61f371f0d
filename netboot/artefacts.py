"""Writing and removing a node's boot artefacts under the netboot directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from netboot.render import BootTarget, dhcp_host_entry, ipxe_script


def node_dir(root: Path, node_id: str) -> Path:
    return root / "nodes" / node_id


def prepare(root: Path, node_id: str, macs: list[str], target: BootTarget) -> Path:
    """Write the node's iPXE script and DHCP host entries; idempotent."""
    d = node_dir(root, node_id)
    d.mkdir(parents=True, exist_ok=True)
    (d / "boot.ipxe").write_text(ipxe_script(target))
    (d / "dhcp-hosts").write_text("".join(dhcp_host_entry(m, node_id) + "\n" for m in macs))
    return d


def clean_up(root: Path, node_id: str) -> None:
    shutil.rmtree(node_dir(root, node_id), ignore_errors=True)
