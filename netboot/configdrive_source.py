"""What goes on a node's config drive, read from its instance (the data for ``configdrive``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from netboot import configdrive
from portal.core.errors import NotFound
from portal.core.models import Instance, IPAllocation, Node, Port, Subnet


def drive_for(s: Session, node: Node) -> configdrive.ConfigDrive:
    inst = s.get(Instance, node.instance_id) if node.instance_id else None
    if inst is None:
        raise NotFound("this node has no instance: nothing to put on a config drive")
    macs = list(
        s.scalars(
            select(Port.address)
            .where(Port.node_id == node.id, Port.pxe_enabled.is_(True))
            .order_by(Port.address)
        )
    ) or list(s.scalars(select(Port.address).where(Port.node_id == node.id)))
    allocations = s.scalars(
        select(IPAllocation)
        .where(IPAllocation.instance_id == inst.id)
        .order_by(IPAllocation.address)
    ).all()
    addresses = []
    for i, alloc in enumerate(allocations):
        subnet = s.get(Subnet, alloc.subnet_id)
        if subnet is None or not macs:
            continue
        addresses.append(
            configdrive.Address(
                mac=macs[min(i, len(macs) - 1)],
                ip=alloc.address,
                cidr=subnet.cidr,
                gateway=subnet.gateway_ip,
                network_id=alloc.network_id,
            )
        )
    keys = [
        k["public_key"] for k in inst.ssh_keys or [] if isinstance(k, dict) and "public_key" in k
    ]
    dns = sorted({a.gateway for a in addresses if a.gateway})
    return configdrive.ConfigDrive(
        uuid=inst.id,
        hostname=inst.name,
        public_keys=keys,
        user_data=inst.user_data,
        addresses=addresses,
        dns=dns,
        meta={str(k): str(v) for k, v in (inst.meta or {}).items()},
    )


def image_for(s: Session, node: Node) -> bytes:
    return configdrive.build(drive_for(s, node))
