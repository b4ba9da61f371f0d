"""An instance's VIFs (its requested networks, one node NIC each), for the workers.

The claim allocates their addresses (``portal.core.ipam.allocate_vifs``) and binds each to
a port (NIC) of the node on the VIF network's physical network (``bind_port``); the deploy
reads them back (``for_instance``) to program the switch and write the config drive.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from portal.core.models import InstanceVif, IPAllocation


def for_instance(session: Session, instance_id: str) -> list[InstanceVif]:
    """The instance's VIFs in request order, each with its network (and the network's
    subnets) and its addresses (each with its subnet: cidr, gateway, routes, DNS)."""
    return list(
        session.scalars(
            select(InstanceVif)
            .where(InstanceVif.instance_id == instance_id)
            .order_by(InstanceVif.index)
            .options(selectinload(InstanceVif.addresses).joinedload(IPAllocation.subnet))
        )
    )


def physical_networks(session: Session, instance_id: str) -> list[str | None]:
    """The physical network of each VIF, in VIF order (what the node's NICs must reach)."""
    return [v.network.physical_network for v in for_instance(session, instance_id)]


def bind_port(session: Session, vif_id: str, port_id: str | None) -> None:
    """Record which node port (NIC) carries the VIF; None unbinds it."""
    session.execute(
        update(InstanceVif)
        .where(InstanceVif.id == vif_id)
        .values(port_id=port_id)
        .execution_options(synchronize_session="fetch")
    )
