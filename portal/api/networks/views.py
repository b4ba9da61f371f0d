"""/v1/networks, /v1/subnets, /v1/segment-ranges: tenant networks (Neutron-like)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from portal.api.auth import admin_only, authenticate, principal, writer
from portal.api.common import Blueprint, ctx, tx
from portal.api.networks.schemas import (
    NetworkCreate,
    NetworkList,
    NetworkListArgs,
    NetworkOut,
    NetworkUpdate,
    RangeCreate,
    RangeList,
    RangeListArgs,
    RangeOut,
    RangeUpdate,
    SubnetCreate,
    SubnetList,
    SubnetListArgs,
    SubnetOut,
    SubnetUpdate,
)
from portal.api.pagination import page
from portal.core.models import Network, SegmentRange, Subnet
from portal.services import networks as svc
from portal.services import segments, subnets

blp = Blueprint(
    "networks", __name__, url_prefix="/v1", description="Networks, subnets, segment ranges"
)
blp.before_request(authenticate)


@blp.route("/networks")
class Networks(MethodView):
    @blp.arguments(NetworkListArgs, location="query")
    @blp.response(200, NetworkList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the project's networks and the shared ones (admins: all)."""
        stmt = svc.visible(principal())
        for key in ("name", "shared"):
            if key in args:
                stmt = stmt.where(getattr(Network, key) == args[key])
        if "project_id" in args and principal().is_admin:
            stmt = stmt.where(Network.project_id == args["project_id"])
        with tx() as s:
            items, next_url = page(
                s, stmt, Network, args, ("created_at", "name"), scope=svc.visible(principal())
            )
            return {"networks": items, "next": next_url}

    @writer
    @blp.arguments(NetworkCreate)
    @blp.response(201, NetworkOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Create a network: tenants a VLAN network of their project (its VLAN id from the
        segment ranges); admins also shared, flat and provider networks."""
        with tx() as s:
            net = svc.create(ctx(), s, data, principal())
            return net, 201, {"Location": f"/v1/networks/{net.id}"}


@blp.route("/networks/<network_id>")
class NetworkItem(MethodView):
    @blp.response(200, NetworkOut)
    def get(self, network_id: str) -> Network:
        """Show a network, by id or name."""
        with tx() as s:
            return svc.get_visible(s, network_id, principal())

    @writer
    @blp.arguments(NetworkUpdate)
    @blp.response(200, NetworkOut)
    def patch(self, data: dict[str, Any], network_id: str) -> Network:
        """Rename a network or change its description (its owner or an admin)."""
        with tx() as s:
            return svc.update(s, svc.get_visible(s, network_id, principal()), data, principal())

    @writer
    @blp.response(204)
    def delete(self, network_id: str) -> None:
        """Delete a network and its subnets; 409 (naming them) while instances use it."""
        with tx() as s:
            svc.delete(ctx(), s, svc.get_visible(s, network_id, principal()), principal())


@blp.route("/subnets")
class Subnets(MethodView):
    @blp.arguments(SubnetListArgs, location="query")
    @blp.response(200, SubnetList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the subnets of the networks the caller can see."""
        stmt = subnets.visible(principal())
        for key in ("network_id", "name", "ip_version"):
            if key in args:
                stmt = stmt.where(getattr(Subnet, key) == args[key])
        with tx() as s:
            items, next_url = page(
                s,
                stmt,
                Subnet,
                args,
                ("created_at", "name", "cidr"),
                scope=subnets.visible(principal()),
            )
            return {"subnets": items, "next": next_url}

    @writer
    @blp.arguments(SubnetCreate)
    @blp.response(201, SubnetOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Add a subnet to one of the project's networks (admins: to any)."""
        with tx() as s:
            subnet = subnets.create(ctx(), s, data, principal())
            return subnet, 201, {"Location": f"/v1/subnets/{subnet.id}"}


@blp.route("/subnets/<subnet_id>")
class SubnetItem(MethodView):
    @blp.response(200, SubnetOut)
    def get(self, subnet_id: str) -> Subnet:
        """Show a subnet."""
        with tx() as s:
            return subnets.get_visible(s, subnet_id, principal())

    @writer
    @blp.arguments(SubnetUpdate)
    @blp.response(200, SubnetOut)
    def patch(self, data: dict[str, Any], subnet_id: str) -> Subnet:
        """Rename a subnet, change its DNS servers or host routes."""
        with tx() as s:
            return subnets.update(
                s, subnets.get_visible(s, subnet_id, principal()), data, principal()
            )

    @writer
    @blp.response(204)
    def delete(self, subnet_id: str) -> None:
        """Delete a subnet; 409 (naming them) while instances hold addresses of it."""
        with tx() as s:
            subnets.delete(s, subnets.get_visible(s, subnet_id, principal()), principal())


@blp.route("/segment-ranges")
class Ranges(MethodView):
    @admin_only
    @blp.arguments(RangeListArgs, location="query")
    @blp.response(200, RangeList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the VLAN ranges tenant networks are given ids from."""
        stmt = segments.visible()
        if "physical_network" in args:
            stmt = stmt.where(SegmentRange.physical_network == args["physical_network"])
        with tx() as s:
            items, next_url = page(s, stmt, SegmentRange, args, ("created_at", "minimum"))
            return {"segment_ranges": items, "next": next_url}

    @admin_only
    @blp.arguments(RangeCreate)
    @blp.response(201, RangeOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Add a VLAN range to a physical network (ranges of one never overlap)."""
        with tx() as s:
            rng = segments.create_range(s, data, principal())
            return rng, 201, {"Location": f"/v1/segment-ranges/{rng.id}"}


@blp.route("/segment-ranges/<range_id>")
class RangeItem(MethodView):
    @admin_only
    @blp.response(200, RangeOut)
    def get(self, range_id: str) -> SegmentRange:
        """Show a segment range."""
        with tx() as s:
            return segments.get(s, range_id)

    @admin_only
    @blp.arguments(RangeUpdate)
    @blp.response(200, RangeOut)
    def patch(self, data: dict[str, Any], range_id: str) -> SegmentRange:
        """Change a range's description."""
        with tx() as s:
            return segments.update_range(s, segments.get(s, range_id), data)

    @admin_only
    @blp.response(204)
    def delete(self, range_id: str) -> None:
        """Delete a range; 409 while networks hold VLAN ids of it."""
        with tx() as s:
            segments.delete_range(s, segments.get(s, range_id), principal())
