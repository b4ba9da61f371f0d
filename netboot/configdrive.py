"""The config drive: OpenStack ConfigDrive v2, as an ISO 9660 image labelled ``config-2``.

What cloud-init's ConfigDrive data source (and Nova/Ironic users) expect:
``openstack/latest/meta_data.json`` (uuid, hostname, public_keys, meta),
``openstack/latest/user_data`` and ``openstack/latest/network_data.json`` (links,
static IPv4 networks, DNS). The portal builds it per deploy; the agent writes it to a
partition of its own at the end of the disk.
"""

from __future__ import annotations

import io
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

import pycdlib

LABEL = "config-2"
ROOT = "openstack/latest"


@dataclass(frozen=True)
class Address:
    mac: str
    ip: str
    cidr: str  # the subnet, e.g. 192.0.2.0/24
    gateway: str | None = None
    network_id: str = ""


@dataclass(frozen=True)
class ConfigDrive:
    uuid: str
    hostname: str
    public_keys: list[str] = field(default_factory=list)
    user_data: str | None = None
    addresses: list[Address] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)


def meta_data(cd: ConfigDrive) -> dict[str, Any]:
    return {
        "uuid": cd.uuid,
        "hostname": cd.hostname,
        "name": cd.hostname,
        "launch_index": 0,
        "public_keys": {f"key-{i}": key for i, key in enumerate(cd.public_keys)},
        "meta": dict(cd.meta),
    }


def network_data(cd: ConfigDrive) -> dict[str, Any]:
    links, networks = [], []
    for i, a in enumerate(cd.addresses):
        net = ipaddress.ip_network(a.cidr, strict=False)
        link_id = f"link{i}"
        links.append({"id": link_id, "type": "phy", "ethernet_mac_address": a.mac, "mtu": 1500})
        routes = (
            [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": a.gateway}]
            if a.gateway
            else []
        )
        networks.append(
            {
                "id": f"network{i}",
                "type": "ipv4" if net.version == 4 else "ipv6",
                "link": link_id,
                "ip_address": a.ip,
                "netmask": str(net.netmask),
                "routes": routes,
                "network_id": a.network_id,
            }
        )
    services = [{"type": "dns", "address": d} for d in cd.dns]
    return {"links": links, "networks": networks, "services": services}


def files(cd: ConfigDrive) -> dict[str, bytes]:
    """The drive's files by path: what ``build`` puts in the image."""
    out = {
        f"{ROOT}/meta_data.json": json.dumps(meta_data(cd), indent=1, sort_keys=True).encode(),
        f"{ROOT}/network_data.json": json.dumps(network_data(cd), indent=1).encode(),
    }
    if cd.user_data:
        out[f"{ROOT}/user_data"] = cd.user_data.encode()
    return out


def _iso_name(part: str, index: int, is_file: bool) -> str:
    """An ISO 9660 level 1 name (the Rock Ridge and Joliet names carry the real ones)."""
    stem = "".join(c for c in part.upper() if c.isalnum())[:6] or "F"
    stem = f"{stem}{index:02d}"[:8]
    return f"{stem}.;1" if is_file else stem


def build(cd: ConfigDrive) -> bytes:
    """The ISO image (Rock Ridge + Joliet, volume id ``config-2``)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, rock_ridge="1.09", joliet=3, vol_ident=LABEL)
    made: dict[str, str] = {"": ""}  # real dir path → ISO path
    for n, (path, data) in enumerate(sorted(files(cd).items())):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            real = "/".join(parts[:depth])
            if real not in made:
                parent = made["/".join(parts[: depth - 1])]
                iso_path = f"{parent}/{_iso_name(parts[depth - 1], len(made), False)}"
                iso.add_directory(iso_path, rr_name=parts[depth - 1], joliet_path="/" + real)
                made[real] = iso_path
        parent = made["/".join(parts[:-1])]
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"{parent}/{_iso_name(parts[-1], n, True)}",
            rr_name=parts[-1],
            joliet_path="/" + path,
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read(image: bytes) -> dict[str, bytes]:
    """The files of a config drive image by path (through Rock Ridge): for tests and checks."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    found: dict[str, bytes] = {}
    try:
        for dirpath, _dirs, names in iso.walk(rr_path="/"):
            for name in names:
                rr = f"{dirpath.rstrip('/')}/{name}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=rr)
                found[rr.lstrip("/")] = buf.getvalue()
        if iso.pvd is None:  # pragma: no cover - pycdlib always has a PVD after open
            raise ValueError("not an ISO 9660 image")
        found["__volume_id__"] = iso.pvd.volume_identifier.rstrip(b" ")
    finally:
        iso.close()
    return found
