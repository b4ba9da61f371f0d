"""Per-MAC DHCP boot settings for dnsmasq, as files the portal writes and dnsmasq re-reads live.

dnsmasq runs with ``dhcp-hostsdir=<root>/hosts`` and ``dhcp-optsdir=<root>/opts`` (and
``dhcp-userclass=set:ipxe,iPXE``). Each MAC has one file in each directory, named after the
MAC (``52-54-00-b5-00-00``):

- ``hosts/<mac>``: ``52:54:00:b5:00:00,set:<tag>``: the MAC carries the tag ``<tag>``;
- ``opts/<mac>``: ``tag:<tag>,tag:ipxe,option:bootfile-name,<boot url>``: an iPXE client
  with that tag gets the boot URL as its file name (iPXE chains it over HTTP).

What dnsmasq 2.90 does with those directories (measured, see netboot/lab/README.md):
a new or changed file is read at once (inotify), and for the same MAC (hosts) or the same
tag and option (opts) the newest read wins; a *deleted* or emptied file changes nothing
until dnsmasq restarts or gets SIGHUP (then only the files on disk count). So a boot URL is
never withdrawn by deleting files: ``clear_boot`` rewrites the host file with ``NO_BOOT_TAG``,
a tag that no options file ever names, so the MAC gets a lease without a file name and iPXE
falls through to the next boot device. Unknown MACs get no file name either.

Files are written atomically (a dot-file, which dnsmasq ignores, renamed into place) and
world-readable (dnsmasq drops root privileges before it reads them). Stdlib only: the portal
imports this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

NO_BOOT_TAG = "bms-noboot"
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_RESERVED_TAGS = frozenset({"ipxe", "known", "known-othernet", NO_BOOT_TAG})
_URL_RE = re.compile(r"^https?://[^\s,\"'\\#]+$")


@dataclass(frozen=True)
class DhcpDirs:
    """The two directories dnsmasq watches."""

    hosts: Path
    opts: Path

    @classmethod
    def under(cls, root: Path) -> DhcpDirs:
        """``<root>/hosts`` and ``<root>/opts`` (the layout ``bms lab`` uses)."""
        return cls(hosts=Path(root) / "hosts", opts=Path(root) / "opts")

    def create(self) -> None:
        for d in (self.hosts, self.opts):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)


def normalize_mac(mac: str) -> str:
    value = mac.strip().lower().replace("-", ":")
    if not _MAC_RE.fullmatch(value):
        raise ValueError(f"not a MAC address: {mac!r}")
    return value


def file_name(mac: str) -> str:
    """The file name for a MAC in both directories: ``52-54-00-b5-00-00``."""
    return normalize_mac(mac).replace(":", "-")


def default_tag(mac: str) -> str:
    """A tag of the MAC's own: ``bms-525400b50000``."""
    return "bms-" + normalize_mac(mac).replace(":", "")


def _check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag) or tag.lower() in _RESERVED_TAGS:
        raise ValueError(f"unusable dnsmasq tag: {tag!r}")
    return tag


def _check_url(url: str) -> str:
    # dnsmasq splits option values on commas and ends a line at " #": keep URLs plain.
    if not _URL_RE.fullmatch(url):
        raise ValueError(f"boot URL must be http(s) without spaces, commas, quotes or '#': {url!r}")
    return url


def render_host(mac: str, tag: str) -> str:
    """The ``hosts/<mac>`` file: ``<mac>,set:<tag>``."""
    if tag != NO_BOOT_TAG:
        _check_tag(tag)
    return f"{normalize_mac(mac)},set:{tag}\n"


def render_opts(tag: str, boot_url: str) -> str:
    """The ``opts/<mac>`` file: the boot URL for iPXE clients carrying ``tag``."""
    return f"tag:{_check_tag(tag)},tag:ipxe,option:bootfile-name,{_check_url(boot_url)}\n"


def _write_atomic(path: Path, text: str) -> None:
    # A dot-file: dnsmasq's inotify handler skips names starting with "." (and ending in "~").
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def set_boot(dirs: DhcpDirs, mac: str, boot_url: str, tag: str | None = None) -> None:
    """Make ``mac`` netboot ``boot_url`` (its next DHCP request; dnsmasq keeps running).

    The options file is written before the host file, so the MAC never carries a tag whose
    URL is not there yet.
    """
    tag = _check_tag(default_tag(mac) if tag is None else tag)
    name = file_name(mac)
    dirs.create()
    _write_atomic(dirs.opts / name, render_opts(tag, boot_url))
    _write_atomic(dirs.hosts / name, render_host(mac, tag))


def clear_boot(dirs: DhcpDirs, mac: str) -> None:
    """Withdraw the boot URL of ``mac``: it gets a lease but no file name (local boot).

    Rewrites the host file with ``NO_BOOT_TAG`` (deleting it would not take effect live) and
    removes the options file (dead weight once no host carries its tag).
    """
    name = file_name(mac)
    dirs.create()
    _write_atomic(dirs.hosts / name, render_host(mac, NO_BOOT_TAG))
    with contextlib.suppress(FileNotFoundError):
        (dirs.opts / name).unlink()


def boot_url(dirs: DhcpDirs, mac: str) -> str | None:
    """The boot URL currently on file for ``mac`` (None: no netboot), read back from disk."""
    name = file_name(mac)
    try:
        host = (dirs.hosts / name).read_text().strip()
        opts = (dirs.opts / name).read_text().strip()
    except FileNotFoundError:
        return None
    tag = host.partition(",set:")[2]
    prefix = f"tag:{tag},tag:ipxe,option:bootfile-name,"
    return opts[len(prefix) :] if tag != NO_BOOT_TAG and opts.startswith(prefix) else None
