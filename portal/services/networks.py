"""The provider network every instance gets an address on (tenant networks come later)."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.models import Network, Subnet
from portal.services.context import Context

PROVIDER = "provider"


def ensure_provider(ctx: Context, s: Session) -> Network:
    net = s.scalars(select(Network).where(Network.name == PROVIDER)).first()
    if net is not None:
        return net
    cfg = ctx.settings
    cidr = ipaddress.ip_network(cfg.provider_network_cidr)
    start, _, end = cfg.provider_network_pool.partition("-")
    for addr in (start, end, cfg.provider_network_gateway):
        if ipaddress.ip_address(addr) not in cidr:
            raise ValueError(f"{addr} is not in {cidr} (check BMS_PROVIDER_* settings)")
    net = Network(name=PROVIDER, network_type="flat", physical_network="physnet1", shared=True)
    net.subnets.append(
        Subnet(
            cidr=str(cidr),
            gateway_ip=cfg.provider_network_gateway,
            pool_start=start.strip(),
            pool_end=end.strip(),
        )
    )
    s.add(net)
    s.flush()
    events.record(s, "network.created", "network", net.id, cidr=str(cidr))
    return net
