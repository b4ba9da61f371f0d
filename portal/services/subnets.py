"""Subnets: CIDR, gateway, allocation pools, DNS servers, host routes, all validated.

Every refusal is a 422 naming the field. Subnets of one network never overlap (the
network's row is locked while a subnet is added, so two creates cannot both pass).
"""

from __future__ import annotations

import ipaddress
import itertools
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.errors import Forbidden, Invalid, NotFound
from portal.core.models import Instance, IPAllocation, Network, Subnet
from portal.services import networks
from portal.services.context import Context
from portal.services.lookup import referenced
from tenants import quotas
from tenants.principal import Principal

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
# The smallest subnets: two hosts besides network and broadcast (IPv4), or four (IPv6).
MAX_PREFIX = {4: 30, 6: 126}


def visible(principal: Principal) -> Select[Subnet]:
    return _visible(principal.project_id, admin=principal.is_admin)


def _visible(pid: Any, *, admin: bool) -> Select[Subnet]:
    stmt = select(Subnet)
    if not admin:
        stmt = stmt.join(Network, Network.id == Subnet.network_id).where(
            or_(Network.project_id == pid, Network.shared.is_(True))
        )
    return stmt


@cache
def _lookup(admin: bool) -> Select[Subnet]:
    return _visible(bindparam("project_id"), admin=admin).where(Subnet.id == bindparam("ident"))


def get_visible(s: Session, ident: str, principal: Principal) -> Subnet:
    found = s.scalars(
        _lookup(principal.is_admin), {"ident": ident, "project_id": principal.project_id}
    ).first()
    if found is None:
        raise NotFound(f"subnet '{ident}' not found")
    return found


def _address(value: str, field: str, version: int | None = None) -> IPAddr:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise Invalid(f"'{value}' is not an IP address", field=field) from None
    if version is not None and ip.version != version:
        raise Invalid(f"{value} is not an IPv{version} address", field=field)
    return ip


def parse_cidr(value: str, field: str = "cidr") -> IPNet:
    """A CIDR written canonically (host bits zero): ``10.0.0.5/24`` is refused."""
    try:
        return ipaddress.ip_network(value)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise Invalid(f"'{value}' is not a CIDR (e.g. 10.0.0.0/24)", field=field) from None
        raise Invalid(f"'{value}' has host bits set: did you mean {loose}?", field=field) from None


def _host(net: IPNet, ip: IPAddr, field: str) -> None:
    if ip not in net:
        raise Invalid(f"{ip} is not in {net}", field=field)
    if ip == net.network_address:
        raise Invalid(f"{ip} is the network address of {net}", field=field)
    if net.version == 4 and ip == net.broadcast_address:
        raise Invalid(f"{ip} is the broadcast address of {net}", field=field)


def _last_host(net: IPNet) -> int:
    return int(net.broadcast_address) - (1 if net.version == 4 else 0)


def default_pools(net: IPNet, gateway: IPAddr | None) -> list[dict[str, str]]:
    """Every host address of ``net`` but the gateway, as one or two pools."""
    first, last = int(net.network_address) + 1, _last_host(net)
    spans = [(first, last)]
    if gateway is not None:
        g = int(gateway)
        spans = [(a, b) for a, b in ((first, g - 1), (g + 1, last)) if a <= b]
    make = ipaddress.ip_address
    return [{"start": str(make(a)), "end": str(make(b))} for a, b in spans]


def check_pools(
    net: IPNet, pools: list[dict[str, str]], gateway: IPAddr | None
) -> list[dict[str, str]]:
    spans: list[tuple[int, int, int]] = []
    for i, pool in enumerate(pools):
        field = f"allocation_pools.{i}"
        start = _address(pool["start"], f"{field}.start", net.version)
        end = _address(pool["end"], f"{field}.end", net.version)
        _host(net, start, f"{field}.start")
        _host(net, end, f"{field}.end")
        if int(start) > int(end):
            raise Invalid(f"pool start {start} is after its end {end}", field=field)
        if gateway is not None and int(start) <= int(gateway) <= int(end):
            raise Invalid(f"pool {start}-{end} holds the gateway {gateway}", field=field)
        spans.append((int(start), int(end), i))
    spans.sort()
    for (_, prev_end, _), (next_start, _, j) in itertools.pairwise(spans):
        if next_start <= prev_end:
            raise Invalid(f"pool {j} overlaps another pool", field=f"allocation_pools.{j}")
    make = ipaddress.ip_address
    return [
        {"start": str(make(a)), "end": str(make(b))}
        for a, b, _ in sorted(spans, key=lambda t: t[2])
    ]


def check_dns(values: list[str]) -> list[str]:
    out: list[str] = []
    for i, value in enumerate(values):
        ip = str(_address(value, f"dns_nameservers.{i}"))
        if ip in out:
            raise Invalid(f"{ip} is listed twice", field=f"dns_nameservers.{i}")
        out.append(ip)
    return out


def check_routes(net: IPNet, routes: list[dict[str, str]]) -> list[dict[str, str]]:
    out = []
    for i, route in enumerate(routes):
        dest = parse_cidr(route["destination"], f"host_routes.{i}.destination")
        hop = _address(route["nexthop"], f"host_routes.{i}.nexthop", net.version)
        if dest.version != net.version:
            raise Invalid(
                f"{dest} is not an IPv{net.version} network", field=f"host_routes.{i}.destination"
            )
        if hop not in net:
            raise Invalid(
                f"next hop {hop} is not on the subnet {net}", field=f"host_routes.{i}.nexthop"
            )
        out.append({"destination": str(dest), "nexthop": str(hop)})
    return out


def validate(data: dict[str, Any], others: list[Subnet]) -> dict[str, Any]:
    """The subnet's fields, canonical, or :class:`Invalid` naming the first bad field."""
    net = parse_cidr(data["cidr"])
    version = data.get("ip_version") or net.version
    if version != net.version:
        raise Invalid(f"{net} is not an IPv{version} network", field="cidr")
    if net.prefixlen > MAX_PREFIX[version]:
        raise Invalid(
            f"/{net.prefixlen} is too small: at most /{MAX_PREFIX[version]} for IPv{version}",
            field="cidr",
        )
    for other in others:
        if net.overlaps(ipaddress.ip_network(other.cidr)):
            raise Invalid(f"{net} overlaps subnet {other.cidr} ({other.id})", field="cidr")
    gateway: IPAddr | None
    if "gateway_ip" not in data:
        gateway = net.network_address + 1
    elif data["gateway_ip"] is None:
        gateway = None
    else:
        gateway = _address(data["gateway_ip"], "gateway_ip", version)
        _host(net, gateway, "gateway_ip")
    if data.get("allocation_pools"):
        pools = check_pools(net, data["allocation_pools"], gateway)
    else:
        pools = default_pools(net, gateway)
    return {
        "cidr": str(net),
        "ip_version": version,
        "gateway_ip": str(gateway) if gateway is not None else None,
        "allocation_pools": pools,
        "dns_nameservers": check_dns(data.get("dns_nameservers") or []),
        "host_routes": check_routes(net, data.get("host_routes") or []),
    }


def create(ctx: Context, s: Session, data: dict[str, Any], principal: Principal) -> Subnet:
    with referenced("network"):
        net = networks.get_visible(s, data["network"], principal)
    if not principal.is_admin and net.project_id != principal.project_id:
        raise Forbidden(
            f"network '{net.name}' is shared with you: only its owner adds subnets",
            field="network",
        )
    # One subnet change per network at a time: the overlap check below holds.
    s.execute(select(Network.id).where(Network.id == net.id).with_for_update())
    others = list(s.scalars(select(Subnet).where(Subnet.network_id == net.id)))
    fields = validate(data, others)
    if net.project_id is not None:
        quotas.reserve(s, net.project_id, subnets=1, defaults=ctx.quota_defaults)
    subnet = Subnet(
        network_id=net.id,
        project_id=net.project_id,
        name=data.get("name") or "",
        description=data.get("description"),
        **fields,
    )
    s.add(subnet)
    s.flush()
    s.expire(net, ["subnets"])
    events.record(
        s,
        "subnet.created",
        "subnet",
        subnet.id,
        actor=principal.actor,
        project_id=net.project_id,
        network_id=net.id,
        cidr=subnet.cidr,
    )
    return subnet


def _network(s: Session, subnet: Subnet) -> Network:
    return s.get_one(Network, subnet.network_id)


def update(s: Session, subnet: Subnet, changes: dict[str, Any], principal: Principal) -> Subnet:
    networks.check_owner(_network(s, subnet), principal)
    net = ipaddress.ip_network(subnet.cidr)
    if "dns_nameservers" in changes:
        subnet.dns_nameservers = check_dns(changes["dns_nameservers"] or [])
    if "host_routes" in changes:
        subnet.host_routes = check_routes(net, changes["host_routes"] or [])
    for key in ("name", "description"):
        if key in changes:
            setattr(subnet, key, changes[key])
    events.record(
        s,
        "subnet.updated",
        "subnet",
        subnet.id,
        actor=principal.actor,
        project_id=subnet.project_id,
        fields=sorted(changes),
    )
    return subnet


def delete(s: Session, subnet: Subnet, principal: Principal) -> None:
    """Refused (409, naming the instances) while any address of it is allocated."""
    net = _network(s, subnet)
    networks.check_owner(net, principal)
    s.execute(select(Network.id).where(Network.id == net.id).with_for_update())
    rows = s.execute(
        select(Instance.id, Instance.name)
        .join(IPAllocation, IPAllocation.instance_id == Instance.id)
        .where(IPAllocation.subnet_id == subnet.id)
        .distinct()
        .order_by(Instance.name, Instance.id)
        .limit(20)
    ).all()
    if rows:
        raise networks.in_use_conflict(
            f"subnet {subnet.cidr}", [{"id": r.id, "name": r.name} for r in rows]
        )
    s.delete(subnet)
    s.flush()
    s.expire(net, ["subnets"])
    if subnet.project_id is not None:
        quotas.release(s, subnet.project_id, subnets=1)
    events.record(
        s,
        "subnet.deleted",
        "subnet",
        subnet.id,
        actor=principal.actor,
        project_id=subnet.project_id,
        network_id=subnet.network_id,
        cidr=subnet.cidr,
    )
