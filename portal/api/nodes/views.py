"""/v1/nodes and /v1/ports (admin only)."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView
from sqlalchemy import select
from werkzeug.routing import BaseConverter

from portal.api.auth import admin_only, authenticate, principal
from portal.api.common import Blueprint, apply_patch, ctx, require_body, tx
from portal.api.nodes import importer
from portal.api.nodes.schemas import (
    ImportArgs,
    ImportResult,
    InventoryOut,
    LockBreakArgs,
    MaintenanceBody,
    NodeCreate,
    NodeList,
    NodeListArgs,
    NodeOut,
    NodePatchable,
    NodePatchOp,
    PortCreate,
    PortList,
    PortListArgs,
    PortOut,
    PortUpdate,
    PowerBody,
    ProvisionBody,
    SensorsOut,
    ValidationOut,
    dump_nodes,
)
from portal.api.pagination import page
from portal.core.db import one_of
from portal.core.models import Node, Port
from portal.services import node_locks
from portal.services import nodes as svc
from portal.services.lookup import get_or_404, node_by_ident, referenced

blp = Blueprint(
    "nodes", __name__, url_prefix="/v1", description="Bare-metal nodes and ports (admin)"
)
blp.before_request(authenticate)

NODE_SORT = ("created_at", "name", "provision_state", "resource_class", "updated_at")
# What the node list shows (driver_internal_info is private), fetched as plain rows.
NODE_LIST_COLUMNS = tuple(c for c in Node.__table__.c if c.key != "driver_internal_info")
PORT_LIST_COLUMNS = (
    Port.id,
    Port.node_id,
    Port.address,
    Port.physical_network,
    Port.pxe_enabled,
    Port.source,
    Port.local_link_connection,
    Port.switch_id,
    Port.created_at,
)


@blp.route("/nodes")
class Nodes(MethodView):
    @admin_only
    @blp.arguments(NodeListArgs, location="query")
    @blp.response(200, NodeList)
    def get(self, args: dict[str, Any]) -> Any:
        """List nodes, with filters, sorting and limit/marker pagination."""
        # Up to 1,000 nodes per page: two queries (nodes, then all their ports) whatever
        # the page size, plain rows instead of ORM objects, serialized by dump_nodes.
        stmt = select(*NODE_LIST_COLUMNS)
        for key in (
            "provision_state",
            "resource_class",
            "maintenance",
            "owner",
            "lessee",
            "driver",
        ):
            if key in args:
                stmt = stmt.where(getattr(Node, key) == args[key])
        if "associated" in args:
            col = Node.instance_id
            stmt = stmt.where(col.is_not(None) if args["associated"] else col.is_(None))
        with tx() as s:
            items, next_url = page(s, stmt, Node, args, NODE_SORT, rows=True)
            ports: dict[str, list[Any]] = {}
            if items:
                port_rows = s.execute(
                    select(*PORT_LIST_COLUMNS)
                    .where(one_of(s, Port.node_id, [n.id for n in items]))
                    .order_by(Port.node_id, Port.address)
                )
                for p in port_rows:
                    ports.setdefault(p.node_id, []).append(p)
        return current_app.json.response({"nodes": dump_nodes(items, ports), "next": next_url})

    @admin_only
    @blp.arguments(NodeCreate)
    @blp.response(201, NodeOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Enroll a node (and its ports). It starts in ``enroll``."""
        with tx() as s:
            node = svc.create_node(ctx(), s, data, principal())
            return node, 201, {"Location": f"/v1/nodes/{node.id}"}


@blp.route("/nodes/import")
class NodeImport(MethodView):
    @admin_only
    @blp.arguments(ImportArgs, location="query")
    @blp.response(200, ImportResult)
    @blp.doc(requestBody=importer.REQUEST_BODY)
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Bulk enroll from a JSON list or a CSV file: a result per row."""
        require_body("application/json", "text/csv")
        rows = importer.parse(
            request.get_data(),
            request.content_type or "application/json",
            max_rows=ctx().settings.max_import_rows,
        )
        with tx() as s:
            return importer.import_rows(ctx(), s, rows, principal(), atomic=args["atomic"])


class NodeIdent(BaseConverter):
    """A node's uuid or name, but not ``import``: /v1/nodes/import is the bulk import, so a
    PATCH or DELETE there is a 405 (not a node lookup)."""

    regex = "(?!import$)[^/]+"


def node_ident_schema(_converter: Any) -> dict[str, Any]:
    return {"type": "string", "not": {"enum": ["import"]}}


# /v1/nodes/import matches this path too: any method but its POST there is a 405.
IMPORT_IS_NOT_A_NODE = {405: "METHOD_NOT_ALLOWED"}


@blp.route("/nodes/<node_ident:ident>")
class NodeItem(MethodView):
    @admin_only
    @blp.doc(responses=IMPORT_IS_NOT_A_NODE)
    @blp.response(200, NodeOut)
    def get(self, ident: str) -> Node:
        """Show a node, by uuid or name."""
        with tx() as s:
            return node_by_ident(s, ident)

    @admin_only
    @blp.doc(responses=IMPORT_IS_NOT_A_NODE)
    @blp.arguments(NodePatchOp(many=True))
    @blp.response(200, NodeOut)
    def patch(self, ops: list[dict[str, Any]], ident: str) -> Node:
        """Change fields with a JSON Patch (add / replace / remove)."""
        with tx() as s:
            node = node_by_ident(s, ident, for_update=True)
            doc = NodeOut().dump(node)
            doc["driver_info"] = svc.redacted_info(node.driver_info)
            changes = apply_patch(doc, ops, NodePatchable())
            return svc.update_node(ctx(), s, node, changes, principal())

    @admin_only
    @blp.doc(responses=IMPORT_IS_NOT_A_NODE)
    @blp.response(204)
    def delete(self, ident: str) -> None:
        """Delete a node that holds no instance and is not busy."""
        with tx() as s:
            svc.delete_node(s, node_by_ident(s, ident, for_update=True), principal())


@blp.route("/nodes/<ident>/states/provision")
class NodeProvision(MethodView):
    @admin_only
    @blp.arguments(ProvisionBody)
    @blp.response(202, NodeOut)
    def put(self, body: dict[str, Any], ident: str) -> Node:
        """Move a node through its state machine; 409 names the allowed actions."""
        with tx() as s:
            node = node_by_ident(s, ident, for_update=True)
            return svc.provision(ctx(), s, node, body["target"], principal())


@blp.route("/nodes/<ident>/lock")
class NodeLock(MethodView):
    @admin_only
    @blp.arguments(LockBreakArgs, location="query")
    @blp.response(200, NodeOut)
    def delete(self, args: dict[str, Any], ident: str) -> Node:
        """Break the node's lock (its worker died): recorded as ``node.lock_broken``.

        The node then moves on as the reconciler would move it: a deploy fails and the
        node is released, a delete or a cleaning resumes, an inspection fails. 409 while
        the holder's lease is live, unless ``force=true``.
        """
        with tx() as s:
            node = node_by_ident(s, ident, for_update=True)
            return node_locks.break_lock(ctx(), s, node, args["force"], principal())


@blp.route("/nodes/<ident>/states/power")
class NodePower(MethodView):
    @admin_only
    @blp.arguments(PowerBody)
    @blp.response(202, NodeOut)
    def put(self, body: dict[str, Any], ident: str) -> Node:
        """Power on, power off or reboot (runs in a worker)."""
        with tx() as s:
            return svc.power(ctx(), s, node_by_ident(s, ident), body["target"], principal())


@blp.route("/nodes/<ident>/maintenance")
class NodeMaintenance(MethodView):
    @admin_only
    @blp.arguments(MaintenanceBody)
    @blp.response(200, NodeOut)
    def put(self, body: dict[str, Any], ident: str) -> Node:
        """Set maintenance: blocks provisioning actions and scheduling."""
        with tx() as s:
            return svc.set_maintenance(
                s, node_by_ident(s, ident), True, body.get("reason"), principal()
            )

    @admin_only
    @blp.response(200, NodeOut)
    def delete(self, ident: str) -> Node:
        """Unset maintenance."""
        with tx() as s:
            return svc.set_maintenance(s, node_by_ident(s, ident), False, None, principal())


@blp.route("/nodes/<ident>/validate")
class NodeValidate(MethodView):
    @admin_only
    @blp.response(200, ValidationOut)
    def get(self, ident: str) -> dict[str, Any]:
        """Check driver_info per interface, without touching hardware."""
        with tx() as s:
            return svc.validate(ctx(), s, node_by_ident(s, ident))


@blp.route("/nodes/<ident>/sensors")
class NodeSensors(MethodView):
    @admin_only
    @blp.response(200, SensorsOut)
    @blp.doc(responses={502: "BAD_GATEWAY", 504: "GATEWAY_TIMEOUT"})
    def get(self, ident: str) -> dict[str, Any]:
        """Read temperatures, fans and power from the BMC now (through a worker).

        502 if the BMC failed to answer, 504 if no worker answered in time.
        """
        with tx() as s:
            node_id = node_by_ident(s, ident).id
        return svc.sensors(ctx(), node_id)


@blp.route("/nodes/<ident>/inventory")
class NodeInventory(MethodView):
    @admin_only
    @blp.response(200, InventoryOut)
    def get(self, ident: str) -> Any:
        """The raw inventory from the last inspection, and what it changed on the node."""
        with tx() as s:
            return svc.inventory(s, node_by_ident(s, ident))


@blp.route("/ports")
class Ports(MethodView):
    @admin_only
    @blp.arguments(PortListArgs, location="query")
    @blp.response(200, PortList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List ports."""
        stmt = select(Port)
        with tx() as s:
            if "node" in args:
                with referenced("node"):
                    stmt = stmt.where(Port.node_id == node_by_ident(s, args["node"]).id)
            if "address" in args:
                stmt = stmt.where(Port.address == svc.normalize_mac(args["address"]))
            items, next_url = page(s, stmt, Port, args, ("created_at", "address"))
            return {"ports": items, "next": next_url}

    @admin_only
    @blp.arguments(PortCreate)
    @blp.response(201, PortOut)
    def post(self, data: dict[str, Any]) -> Port:
        """Add a NIC to a node."""
        with tx() as s:
            with referenced("node"):
                node = node_by_ident(s, data.pop("node"))
            return svc.create_port(s, node, data, principal())


@blp.route("/ports/<port_id>")
class PortItem(MethodView):
    @admin_only
    @blp.response(200, PortOut)
    def get(self, port_id: str) -> Port:
        """Show a port."""
        with tx() as s:
            return get_or_404(s, Port, port_id, "port")

    @admin_only
    @blp.arguments(PortUpdate)
    @blp.response(200, PortOut)
    def patch(self, data: dict[str, Any], port_id: str) -> Port:
        """Change physical_network, pxe_enabled or local_link_connection (a merge patch;
        null or {} unwires the port). Only while the node is not deployed or busy."""
        with tx() as s:
            port = get_or_404(s, Port, port_id, "port", with_for_update=True)
            return svc.update_port(s, port, data, principal())

    @admin_only
    @blp.response(204)
    def delete(self, port_id: str) -> None:
        """Remove a port."""
        with tx() as s:
            svc.delete_port(s, get_or_404(s, Port, port_id, "port"), principal())
