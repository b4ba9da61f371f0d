"""IP address management for the provider network: allocate, release, never hand out twice.

The unique key on (subnet, address) is the guarantee; allocation picks the lowest free
address and, if a concurrent transaction took it first (the INSERT skips it), looks again.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, make_transient_to_detached

from portal.core.db import insert_unless_taken, new_uuid, utcnow
from portal.core.errors import Conflict
from portal.core.models import IPAllocation, Network, Subnet


def pool(subnet: Subnet) -> tuple[int, int]:
    return int(ipaddress.ip_address(subnet.pool_start)), int(ipaddress.ip_address(subnet.pool_end))


def allocate(
    session: Session, network: Network, instance_id: str, attempts: int = 20
) -> IPAllocation:
    for subnet in network.subnets:
        start, end = pool(subnet)
        for _ in range(attempts):
            used = {
                int(ipaddress.ip_address(a))
                for a in session.scalars(
                    select(IPAllocation.address).where(IPAllocation.subnet_id == subnet.id)
                )
            }
            free = next((i for i in range(start, end + 1) if i not in used), None)
            if free is None:
                break  # this subnet is full; try the next one
            values = {
                "id": new_uuid(),
                "subnet_id": subnet.id,
                "network_id": network.id,
                "address": str(ipaddress.ip_address(free)),
                "instance_id": instance_id,
                "created_at": utcnow(),
                "updated_at": None,
            }
            if not insert_unless_taken(session, IPAllocation.__table__, values):
                continue  # taken by a concurrent allocation: look again
            # The row is in the transaction; hand it back as the session's, as loaded.
            alloc = IPAllocation(**values)
            make_transient_to_detached(alloc)
            session.add(alloc)
            return alloc
    raise Conflict(f"no free IP address left on network '{network.name}'", network=network.id)


def release(session: Session, instance_id: str) -> list[str]:
    """Free the instance's addresses; returns them (one statement: DELETE ... RETURNING)."""
    return list(
        session.scalars(
            delete(IPAllocation)
            .where(IPAllocation.instance_id == instance_id)
            .returning(IPAllocation.address)
        )
    )
