"""Writing and removing a node's boot artefacts under the netboot directory.

<root>/boot/<sha256 of the boot token>.ipxe   the operation's boot script
<root>/nodes/<node id>/boot-digest            which script is the node's (for clean-up)
<root>/nodes/<node id>/dhcp-hosts             dnsmasq dhcp-host lines for its MACs
<root>/nodes/<node id>/boot-url               the script URL DHCP hands its MACs
"""

from __future__ import annotations

import shutil
from pathlib import Path

from netboot import dhcp, tokens
from netboot.render import BootTarget, ipxe_script


def dhcp_dirs(root: Path) -> dhcp.DhcpDirs:
    return dhcp.DhcpDirs.under(root / "dhcp")


def node_dir(root: Path, node_id: str) -> Path:
    return root / "nodes" / node_id


def script_path(root: Path, digest: str) -> Path:
    return root / "boot" / f"{digest}.ipxe"


def _write(path: Path, text: str) -> None:
    """Atomically: a netbooting machine never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def prepare(
    root: Path, node_id: str, macs: list[str], target: BootTarget, boot_token: str, boot_base: str
) -> Path:
    """Write the operation's boot script and the node's DHCP entries; replaces any earlier
    operation's (its token stops working)."""
    clean_up(root, node_id)
    digest = tokens.digest(boot_token)
    _write(script_path(root, digest), ipxe_script(target))
    d = node_dir(root, node_id)
    url = f"{boot_base}/{boot_token}.ipxe"
    _write(d / "boot-digest", digest)
    _write(d / "boot-url", url + "\n")
    _write(d / "macs", "".join(m + "\n" for m in macs))
    for mac in macs:
        dhcp.set_boot(dhcp_dirs(root), mac, url)
    return d


def script_for(root: Path, boot_token: str) -> str | None:
    """The boot script of the operation ``boot_token`` opened, if it is still open."""
    if not boot_token or len(boot_token) > 128:
        return None
    path = script_path(root, tokens.digest(boot_token))
    return path.read_text() if path.is_file() else None


def clean_up(root: Path, node_id: str) -> None:
    d = node_dir(root, node_id)
    digest_file = d / "boot-digest"
    if digest_file.is_file():
        script_path(root, digest_file.read_text().strip()).unlink(missing_ok=True)
    macs_file = d / "macs"
    if macs_file.is_file():
        for mac in macs_file.read_text().split():
            dhcp.clear_boot(dhcp_dirs(root), mac)  # from its next DHCP request: local disk
    shutil.rmtree(d, ignore_errors=True)
