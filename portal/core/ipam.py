"""IP address management on any subnet: allocate, release, never hand out twice.

The unique key on (subnet, address) is the guarantee; allocation picks the lowest free
address of the subnet's allocation pools and, if a concurrent transaction took it first
(the INSERT skips it), looks again. A fixed address is inserted exactly or refused.

Each VIF (one requested network of an instance) gets an IPv4 address, and an IPv6 one too
when its network has an IPv6 subnet (static: the config drive carries it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, make_transient_to_detached

from portal.core.db import insert_unless_taken, new_uuid, utcnow
from portal.core.errors import Conflict, Invalid
from portal.core.models import InstanceVif, IPAllocation, Network, Subnet

ATTEMPTS = 20


def pools(subnet: Subnet) -> list[tuple[int, int]]:
    """The subnet's allocation pools as (first, last) integers, in the subnet's order."""
    return [
        (int(ipaddress.ip_address(p["start"])), int(ipaddress.ip_address(p["end"])))
        for p in subnet.allocation_pools or []
    ]


def unusable(subnet: Subnet, address: str) -> str | None:
    """Why ``address`` cannot be a host address of ``subnet`` (None: it can be)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"'{address}' is not an IP address"
    net = ipaddress.ip_network(subnet.cidr)
    if ip not in net:
        return f"{address} is not in {subnet.cidr}"
    if ip == net.network_address:
        return f"{address} is the network address of {subnet.cidr}"
    if net.version == 4 and ip == net.broadcast_address:
        return f"{address} is the broadcast address of {subnet.cidr}"
    if subnet.gateway_ip and ip == ipaddress.ip_address(subnet.gateway_ip):
        return f"{address} is the gateway of {subnet.cidr}"
    return None


def subnet_for(network: Network, address: str) -> Subnet | None:
    """The subnet of ``network`` whose CIDR holds ``address``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return next((s for s in network.subnets if ip in ipaddress.ip_network(s.cidr)), None)


def _fixed_error(detail: str, conflict: bool = False, **extra: object) -> Exception:
    errors = [{"field": "fixed_ip", "message": detail}]
    if conflict:
        return Conflict(detail, errors=errors, **extra)
    return Invalid(detail, field="fixed_ip", **extra)


def _insert(
    session: Session,
    network: Network,
    subnet: Subnet,
    address: str,
    instance_id: str,
    vif: str | None,
) -> IPAllocation | None:
    values = {
        "id": new_uuid(),
        "subnet_id": subnet.id,
        "network_id": network.id,
        "address": address,
        "instance_id": instance_id,
        "vif_id": vif,
        "created_at": utcnow(),
        "updated_at": None,
    }
    if not insert_unless_taken(session, IPAllocation.__table__, values):
        return None
    # The row is in the transaction; hand it back as the session's, as loaded.
    alloc = IPAllocation(**values)
    make_transient_to_detached(alloc)
    session.add(alloc)
    return alloc


def _free(start: int, end: int, used: set[int]) -> Iterator[int]:
    return (i for i in range(start, end + 1) if i not in used)


def _lowest(session: Session, subnet: Subnet) -> int | None:
    used = {
        int(ipaddress.ip_address(a))
        for a in session.scalars(
            select(IPAllocation.address).where(IPAllocation.subnet_id == subnet.id)
        )
    }
    for start, end in pools(subnet):
        free = next(_free(start, end, used), None)
        if free is not None:
            return free
    return None


def _automatic(
    session: Session,
    network: Network,
    subnets: Iterable[Subnet],
    instance_id: str,
    vif: str | None,
    version: int,
) -> IPAllocation:
    for subnet in subnets:
        for _ in range(ATTEMPTS):
            free = _lowest(session, subnet)
            if free is None:
                break  # this subnet is full; try the next one
            alloc = _insert(
                session, network, subnet, str(ipaddress.ip_address(free)), instance_id, vif
            )
            if alloc is not None:
                return alloc
            # taken by a concurrent allocation: look again
    what = (
        "IP"
        if version == 4 and not any(s.ip_version == 6 for s in network.subnets)
        else (f"IPv{version}")
    )
    raise Conflict(f"no free {what} address left on network '{network.name}'", network=network.id)


def allocate(
    session: Session,
    network: Network,
    instance_id: str,
    fixed_ip: str | None = None,
    vif_id: str | None = None,
) -> list[IPAllocation]:
    """Addresses for one VIF on ``network``: ``fixed_ip`` exactly (if given), and the
    lowest free address of every other IP version the network has subnets of (IPv4 is
    required). Versions the VIF already holds are skipped, so calling it again (at claim
    time, after a fixed IP was taken at create time) only adds what is missing.

    Raises :class:`Invalid` (``fixed_ip`` outside every subnet, or a network, broadcast or
    gateway address) and :class:`Conflict` (``fixed_ip`` taken, no IPv4 subnet, a full
    network), each naming the field or the network.
    """
    held: set[int] = set()
    if vif_id is not None:
        held = {
            ipaddress.ip_address(a).version
            for a in session.scalars(
                select(IPAllocation.address).where(IPAllocation.vif_id == vif_id)
            )
        }
    out: list[IPAllocation] = []
    if fixed_ip is not None:
        subnet = subnet_for(network, fixed_ip)
        if subnet is None:
            cidrs = ", ".join(s.cidr for s in network.subnets) or "none"
            raise _fixed_error(
                f"{fixed_ip} is in no subnet of network '{network.name}' (subnets: {cidrs})"
            )
        if reason := unusable(subnet, fixed_ip):
            raise _fixed_error(reason)
        canonical = str(ipaddress.ip_address(fixed_ip))
        if subnet.ip_version not in held:
            alloc = _insert(session, network, subnet, canonical, instance_id, vif_id)
            if alloc is None:
                raise _fixed_error(
                    f"{canonical} is already in use on network '{network.name}'",
                    conflict=True,
                    network=network.id,
                )
            out.append(alloc)
            held.add(subnet.ip_version)
    for version in (4, 6):
        if version in held:
            continue
        candidates = [s for s in network.subnets if s.ip_version == version]
        if not candidates:
            if version == 4:
                raise Conflict(f"network '{network.name}' has no IPv4 subnet", network=network.id)
            continue
        out.append(_automatic(session, network, candidates, instance_id, vif_id, version))
    return out


def allocate_vifs(session: Session, instance_id: str) -> list[IPAllocation]:
    """Allocate what each of the instance's VIFs lacks (claim time); returns every
    address the instance holds, in address order."""
    vifs = list(
        session.scalars(
            select(InstanceVif)
            .where(InstanceVif.instance_id == instance_id)
            .order_by(InstanceVif.index)
        )
    )
    new = [
        a for vif in vifs for a in allocate(session, vif.network, instance_id, vif.fixed_ip, vif.id)
    ]
    if not any(v.fixed_ip for v in vifs):
        return sorted(new, key=lambda a: a.address)  # nothing was held before
    return list(
        session.scalars(
            select(IPAllocation)
            .where(IPAllocation.instance_id == instance_id)
            .order_by(IPAllocation.address)
        )
    )


def release(session: Session, instance_id: str) -> list[str]:
    """Free the instance's addresses; returns them (one statement: DELETE ... RETURNING)."""
    return list(
        session.scalars(
            delete(IPAllocation)
            .where(IPAllocation.instance_id == instance_id)
            .returning(IPAllocation.address)
        )
    )
