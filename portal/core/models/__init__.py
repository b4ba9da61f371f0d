"""ORM models of the domain core. Tables owned by ``tenants`` are referenced by name only."""

from portal.core.models.agent import AgentSession
from portal.core.models.event import Event
from portal.core.models.flavor import Flavor, FlavorAccess
from portal.core.models.image import Image, ImageMember
from portal.core.models.instance import Instance, Keypair
from portal.core.models.inventory import NodeInventory
from portal.core.models.network import InstanceVif, IPAllocation, Network, SegmentRange, Subnet
from portal.core.models.node import Node, Port
from portal.core.models.placement import Aggregate, AggregateNode, AggregateProject, ServerGroup
from portal.core.models.switch import Switch, SwitchPort

__all__ = [
    "AgentSession",
    "Aggregate",
    "AggregateNode",
    "AggregateProject",
    "Event",
    "Flavor",
    "FlavorAccess",
    "IPAllocation",
    "Image",
    "ImageMember",
    "Instance",
    "InstanceVif",
    "Keypair",
    "Network",
    "Node",
    "NodeInventory",
    "Port",
    "SegmentRange",
    "ServerGroup",
    "Subnet",
    "Switch",
    "SwitchPort",
]
