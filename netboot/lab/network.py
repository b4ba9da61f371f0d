"""The lab network: a namespace with a bridge, tap devices for the VMs, a veth to the host.

::

    root namespace (the portal)            namespace "bmslab"
    ─────────────────────────────          ───────────────────────────────────────────
    <ns>-h  10.250.0.254/24  ◀── veth ──▶  uplink ─┐
                                                   ├─ br0 10.250.0.1/24, fd00:250::1/64
                                  tap0 (VM 0) ─────┤   (dnsmasq: DHCP + RA)
                                  tap1 (VM 1) ─────┘

The host end of the veth sits in the bridge's L2 segment with its own address
(``host_ip``, default 10.250.0.254): a VM reaches a portal listening on that address (or on
0.0.0.0) at ``http://10.250.0.254:<port>`` directly, no routing, no forwarding, no NAT. The
namespace forwards nothing and DHCP hands out no router, so VMs reach only the bridge
segment: dnsmasq and the host side address. ``up`` refuses a subnet that overlaps a route
the host already has.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from dataclasses import asdict, dataclass

from netboot.lab.procs import poll_until, run

IP = "ip"
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,12}$")  # "<name>-h" must fit IFNAMSIZ (15)


@dataclass(frozen=True)
class LabNetwork:
    namespace: str = "bmslab"
    subnet: str = "10.250.0.0/24"
    bridge: str = "br0"
    ipv6_prefix: str = "fd00:250::/64"  # router advertisements only (iPXE waits ~13 s without)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.namespace):
            raise ValueError("namespace: 1-13 chars of a-z, 0-9, '-', starting with a letter")
        net = ipaddress.IPv4Network(self.subnet)
        if net.prefixlen > 29 or not net.is_private:
            raise ValueError("subnet must be a private IPv4 network of /29 or larger")
        ipaddress.IPv6Network(self.ipv6_prefix)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge_ip(self) -> str:
        """dnsmasq's address inside the namespace (first host)."""
        return str(self.network.network_address + 1)

    @property
    def host_ip(self) -> str:
        """The host's address on the lab segment (last host): where VMs reach the portal."""
        return str(self.network.broadcast_address - 1)

    @property
    def bridge_ipv6(self) -> str:
        return str(ipaddress.IPv6Network(self.ipv6_prefix).network_address + 1)

    @property
    def host_if(self) -> str:
        return f"{self.namespace}-h"

    @property
    def ns_if(self) -> str:
        return "uplink"

    def dhcp_range(self) -> tuple[str, str]:
        """Pool for the VMs: from the 10th address to 10 below the host address."""
        net = self.network
        first = net.network_address + min(10, net.num_addresses // 4)
        last = net.broadcast_address - min(10, net.num_addresses // 4)
        return str(first), str(last)

    def instance_pool(self) -> tuple[str, str]:
        """Addresses for the portal's provider network (instances' static IPs from the
        config drive): above the DHCP range, below the host address, so a deployed image
        reaches the host (a callback, ssh from the namespace) and never clashes."""
        _, last = self.dhcp_range()
        return str(ipaddress.IPv4Address(last) + 1), str(self.network.broadcast_address - 2)

    def provider_env(self) -> dict[str, str]:
        """The portal settings that put instances on this segment."""
        first, last = self.instance_pool()
        return {
            "BMS_PROVIDER_CIDR": self.subnet,
            "BMS_PROVIDER_POOL": f"{first}-{last}",
            "BMS_PROVIDER_GATEWAY": self.bridge_ip,
        }

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def exec_argv(net: LabNetwork, argv: list[str]) -> list[str]:
    """``argv`` run inside the lab namespace."""
    return [IP, "netns", "exec", net.namespace, *argv]


def namespace_exists(name: str) -> bool:
    out = run([IP, "-j", "netns", "list"], check=False) or "[]"
    return any(entry.get("name") == name for entry in json.loads(out))


def link_exists(name: str, namespace: str | None = None) -> bool:
    argv = [IP, *(["-n", namespace] if namespace else []), "link", "show", "dev", name]
    try:
        run(argv)
    except RuntimeError:
        return False
    return True


def _conflicting_route(net: LabNetwork) -> str | None:
    routes = json.loads(run([IP, "-j", "-4", "route", "show", "table", "all"]) or "[]")
    mine = net.network
    for route in routes:
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if (
            dev == net.host_if
            or dst in ("default", "")
            or route.get("type") in ("local", "broadcast")
        ):
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.IPv4Network(dst, strict=False).overlaps(mine):
                return f"{dst} dev {dev}"
    return None


def up(net: LabNetwork) -> None:
    """Create the namespace, bridge and veth (whatever is missing); idempotent."""
    conflict = _conflicting_route(net)
    if conflict:
        raise RuntimeError(f"lab subnet {net.subnet} overlaps an existing host route: {conflict}")
    ns = ["-n", net.namespace]
    if not namespace_exists(net.namespace):
        run([IP, "netns", "add", net.namespace])
    run([IP, *ns, "link", "set", "lo", "up"])
    if not link_exists(net.bridge, net.namespace):
        run([IP, *ns, "link", "add", net.bridge, "type", "bridge"])
    prefix = net.network.prefixlen
    v6len = ipaddress.IPv6Network(net.ipv6_prefix).prefixlen
    run([IP, *ns, "addr", "replace", f"{net.bridge_ip}/{prefix}", "dev", net.bridge])
    run([IP, *ns, "addr", "replace", f"{net.bridge_ipv6}/{v6len}", "dev", net.bridge, "nodad"])
    run([IP, *ns, "link", "set", net.bridge, "up"])
    if not link_exists(net.host_if):
        if link_exists(net.ns_if, net.namespace):  # a half-made pair from an interrupted run
            run([IP, *ns, "link", "del", net.ns_if])
        run([IP, "link", "add", net.host_if, "type", "veth", "peer", "name", net.ns_if,
             "netns", net.namespace])  # fmt: skip
    run([IP, *ns, "link", "set", net.ns_if, "master", net.bridge, "up"])
    run([IP, "addr", "replace", f"{net.host_ip}/{prefix}", "dev", net.host_if])
    run([IP, "link", "set", net.host_if, "up"])


def add_tap(net: LabNetwork, tap: str) -> None:
    """A tap device in the namespace on the bridge (QEMU opens it by name); idempotent."""
    ns = ["-n", net.namespace]
    if not link_exists(tap, net.namespace):
        run([IP, *ns, "tuntap", "add", "dev", tap, "mode", "tap"])
    run([IP, *ns, "link", "set", tap, "master", net.bridge, "up"])


def down(net: LabNetwork, timeout: float = 10.0) -> None:
    """Delete the veth (both ends) and the namespace (taps and bridge go with it); idempotent.

    Processes still inside the namespace keep it alive: stop them first.
    """
    if link_exists(net.host_if):
        run([IP, "link", "del", net.host_if], check=False)
    if namespace_exists(net.namespace):
        run([IP, "netns", "del", net.namespace])
    poll_until(
        lambda: not link_exists(net.host_if) and not namespace_exists(net.namespace),
        timeout=timeout,
        what=f"namespace {net.namespace} gone",
    )
