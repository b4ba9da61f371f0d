"""Node onboarding and operations for admins: enroll, patch, provision actions, power."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from portal.core import events, lifecycle
from portal.core.db import insert_now, new_uuid
from portal.core.errors import BadGateway, Conflict, Invalid, NotFound, Unavailable
from portal.core.fsm import InvalidTransition
from portal.core.models import Instance, Node, NodeInventory, Port
from portal.core.secrets import redact
from portal.core.states import NODE_FSM, POWER_TARGETS
from portal.services import switch_links
from portal.services.context import Context
from tenants.models import Project
from tenants.principal import Principal
from workers import queue as jobqueue
from workers.drivers.base import Driver, DriverError
from workers.drivers.registry import get_driver, secret_fields
from workers.runner import node_task

MAC_RE = re.compile(r"^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$")
# User actions on the provision-state API and the job each one starts. ``deploy`` is in the
# state machine but reached only through instances (the scheduler's claim).
ACTIONS: dict[str, str] = {
    "manage": "verify_node",
    "provide": "clean_node",
    "inspect": "inspect_node",
    "undeploy": "delete_instance",
}


def normalize_mac(mac: str) -> str:
    m = mac.strip().lower().replace("-", ":")
    if not MAC_RE.match(m):
        raise Invalid(f"'{mac}' is not a MAC address (expected aa:bb:cc:dd:ee:ff)", field="address")
    return m


def _check_owner(s: Session, owner: str | None, field: str = "owner") -> None:
    if owner is not None and s.get(Project, owner) is None:
        raise Invalid(f"project '{owner}' not found", field=field)


def _flush_unique(s: Session, name: str | None = None, macs: list[str] | None = None) -> None:
    """Flush once; a unique-key violation becomes a 409 naming the field that clashed.

    One flush for the whole node (node, ports, event) instead of one per row plus a
    savepoint per port: fewer round trips, and a clash still rolls back everything.
    """
    _insert_unique(s, None, name, macs)


def _insert_unique(
    s: Session, objs: list[Any] | None, name: str | None = None, macs: list[str] | None = None
) -> None:
    """Flush (``objs`` None) or write ``objs`` now (``db.insert_now``); a unique-key
    violation becomes a 409 naming the field that clashed."""
    try:
        if objs is None:
            s.flush()
        else:
            insert_now(s, objs)
    except IntegrityError as exc:
        text = str(exc.orig)
        if "ports.address" in text or "uq_ports_address" in text:
            raise Conflict(
                f"a port with MAC {', '.join(macs or [])} already exists", field="address"
            ) from None
        if "ports.switch_port_name" in text or "uq_ports_switch_port" in text:
            detail = "a switch port named by these ports was wired to another port meanwhile"
            field = "local_link_connection.port_id"
            raise Conflict(detail, errors=[{"field": field, "message": detail}]) from None
        if "nodes.name" in text or "uq_nodes_name" in text:
            raise Conflict(f"a node named '{name}' already exists", field="name") from None
        raise


def redacted_info(info: dict[str, Any] | None) -> dict[str, Any]:
    """driver_info as the API shows it: every secret, at any depth, as ``******``."""
    return redact(info or {}, secret_fields())


def reseal_secrets(ctx: Context, rotate: bool) -> int:
    """Encrypt every stored secret with the first key (``rotate``), or only those still in
    clear text (left from before encryption covered every depth and value type: numbers,
    nested objects, text starting ``fernet:`` that no configured key opens). Each node in
    its own short transaction, locked; returns how many values changed."""
    from sqlalchemy import select

    with ctx.session() as s:  # one read finds the nodes to change (usually none)
        rows = s.execute(select(Node.id, Node.driver_info).order_by(Node.id)).all()
    ids = [nid for nid, info in rows if ctx.cipher.reseal(info or {}, rotate=rotate)[1]]
    count = 0
    for node_id in ids:
        with ctx.session() as s:
            node = s.get(Node, node_id, with_for_update=True)
            if node is None:
                continue
            info, changed = ctx.cipher.reseal(node.driver_info or {}, rotate=rotate)
            if changed:
                node.driver_info = info
                count += changed
    if count:
        ctx.db.purge_freed_pages()
    return count


def create_node(ctx: Context, s: Session, data: dict[str, Any], actor: Principal) -> Node:
    _check_owner(s, data.get("owner"))
    _check_owner(s, data.get("lessee"), "lessee")
    _check_driver(data.get("driver", "fake"))
    port_data = data.pop("ports", [])
    data["driver_info"] = ctx.cipher.seal(data.get("driver_info") or {})  # at any depth
    node = Node(id=new_uuid(), **data)
    ports = [_new_port(s, node.id, p, f"ports.{i}") for i, p in enumerate(port_data)]
    macs = [p.address for p in ports]
    if len(set(macs)) != len(macs):
        raise Invalid("the same MAC is listed twice", field="ports")
    _check_links(s, ports, "ports.")
    created = events.new(
        "node.created",
        "node",
        node.id,
        actor=actor.actor,
        project_id=node.owner,
        name=node.name,
        driver=node.driver,
        ports=macs,
    )
    # Node, ports and event are written at once with Core INSERTs (the unit of work cost
    # ~1.5 ms of an enroll's ~5); a unique-key clash still fails the whole request.
    _insert_unique(s, [node, *ports, created], node.name, macs)
    # The new node's ports are exactly these: say so, rather than have the response
    # load them back with one more query (and transaction) after the commit.
    set_committed_value(node, "ports", sorted(ports, key=lambda p: p.address))
    return node


def _new_port(s: Session, node_id: str, data: dict[str, Any], prefix: str = "") -> Port:
    """A port of ``data``; its local_link_connection resolved (not yet checked for a
    switch port wired elsewhere: see ``_check_links``)."""
    fields = {k: v for k, v in data.items() if k != "local_link_connection"}
    port = Port(
        id=new_uuid(), node_id=node_id, **{**fields, "address": normalize_mac(data["address"])}
    )
    link = data.get("local_link_connection") or None
    where = f"{prefix}.local_link_connection" if prefix else "local_link_connection"
    port.switch_id, port.switch_port_name = switch_links.resolve(s, link, where)
    port.local_link_connection = dict(link) if link else None
    return port


def _check_links(s: Session, ports: list[Port], prefix: str = "") -> None:
    wanted = [
        (p.switch_id, p.switch_port_name, f"{prefix}{i}.local_link_connection.port_id")
        for i, p in enumerate(ports)
        if p.switch_id is not None and p.switch_port_name is not None
    ]
    if wanted:
        switch_links.check_free(s, wanted)


def _check_driver(name: str) -> None:
    try:
        get_driver(name)
    except DriverError as exc:
        raise Invalid(str(exc), field="driver") from None


def create_port(s: Session, node: Node, data: dict[str, Any], actor: Principal) -> Port:
    port = _new_port(s, node.id, data)
    if port.switch_id is not None and port.switch_port_name is not None:
        field = "local_link_connection.port_id"
        switch_links.check_free(s, [(port.switch_id, port.switch_port_name, field)])
    s.add(port)
    events.record(
        s,
        "port.created",
        "port",
        port.id,
        actor=actor.actor,
        node_id=node.id,
        address=port.address,
        switch_id=port.switch_id,
        switch_port=port.switch_port_name,
    )
    _flush_unique(s, macs=[port.address])
    return port


# Nodes whose ports may be rewired or removed: none is deployed or being worked on.
PORT_CHANGE_STATES = ("enroll", "manageable", "available", "clean failed", "deploy failed")


def _check_ports_changeable(s: Session, port: Port, what: str) -> None:
    node = s.get(Node, port.node_id)
    if node is not None and node.provision_state not in PORT_CHANGE_STATES:
        raise Conflict(
            f"node is '{node.provision_state}': ports can be {what} only while it is in "
            f"{', '.join(PORT_CHANGE_STATES[:-1])} or {PORT_CHANGE_STATES[-1]}",
            state=node.provision_state,
        )


def update_port(s: Session, port: Port, changes: dict[str, Any], actor: Principal) -> Port:
    """Change a port's physical_network, pxe_enabled or local_link_connection (a merge
    patch: given fields replace; a null or {} local_link_connection unwires it)."""
    _check_ports_changeable(s, port, "changed")
    if "local_link_connection" in changes:
        switch_links.wire(s, port, changes["local_link_connection"])
    for key in ("physical_network", "pxe_enabled"):
        if key in changes:
            setattr(port, key, changes[key])
    events.record(
        s,
        "port.updated",
        "port",
        port.id,
        actor=actor.actor,
        node_id=port.node_id,
        fields=sorted(changes),
        switch_id=port.switch_id,
        switch_port=port.switch_port_name,
    )
    _flush_unique(s, macs=[port.address])
    return port


def delete_port(s: Session, port: Port, actor: Principal) -> None:
    _check_ports_changeable(s, port, "removed")
    events.record(
        s,
        "port.deleted",
        "port",
        port.id,
        actor=actor.actor,
        node_id=port.node_id,
        address=port.address,
    )
    s.delete(port)


def update_node(
    ctx: Context, s: Session, node: Node, changes: dict[str, Any], actor: Principal
) -> Node:
    """Apply already-validated field changes (from a JSON-patch or merge body)."""
    if node.reservation:
        raise Conflict(f"node {node.id} is locked by {node.reservation}; try again later")
    if "driver_info" in changes:
        # Secrets sent back as ****** (the caller only saw them redacted) keep the stored ones.
        changes["driver_info"] = ctx.cipher.seal(
            changes["driver_info"] or {}, stored=node.driver_info or {}
        )
    if "driver" in changes:
        _check_driver(changes["driver"])
    if "owner" in changes:
        _check_owner(s, changes["owner"])
    if "lessee" in changes:
        _check_owner(s, changes["lessee"], "lessee")
    for key, value in changes.items():
        setattr(node, key, value)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict("name already in use", field="name") from None
    events.record(
        s,
        "node.updated",
        "node",
        node.id,
        actor=actor.actor,
        project_id=node.owner,
        fields=sorted(changes),
    )
    return node


def delete_node(s: Session, node: Node, actor: Principal) -> None:
    if node.instance_id or node.provision_state not in (
        "enroll",
        "manageable",
        "available",
        "clean failed",
    ):
        raise Conflict(
            f"node in state '{node.provision_state}' cannot be deleted; "
            "allowed in: enroll, manageable, available, clean failed (and no instance)",
            state=node.provision_state,
        )
    if node.reservation:
        raise Conflict(f"node {node.id} is locked by {node.reservation}")
    events.record(
        s, "node.deleted", "node", node.id, actor=actor.actor, project_id=node.owner, name=node.name
    )
    s.delete(node)


def provision(ctx: Context, s: Session, node: Node, target: str, actor: Principal) -> Node:
    """A user action on the node state machine; the work itself runs in a worker."""
    if target == "deploy":  # deploys belong to instances: delete and re-create to retry
        raise Conflict(
            "nodes are deployed through instances: create an instance instead",
            state=node.provision_state,
        )
    if target not in ACTIONS:
        raise Invalid(
            f"unknown target '{target}'; allowed targets: {', '.join(ACTIONS)}", field="target"
        )
    if node.maintenance:
        raise Conflict(
            f"node is in maintenance ({node.maintenance_reason or 'no reason given'}); "
            "unset maintenance first",
            state=node.provision_state,
        )
    if node.reservation:
        raise Conflict(_locked(node))
    try:
        lifecycle.fire_node(s, node, target, actor=actor.actor)
    except InvalidTransition as exc:
        raise Conflict(
            f"cannot '{target}' node in state '{exc.state}'; allowed: "
            f"{', '.join(NODE_FSM.allowed(exc.state)) or 'none'}",
            state=exc.state,
            allowed=NODE_FSM.allowed(exc.state),
        ) from None
    job, arg = ACTIONS[target], node.id
    if target == "undeploy" and node.instance_id:
        _mark_instance_deleting(s, node, actor)
        arg = node.instance_id
    elif target == "undeploy":
        job = "clean_node"  # an orphaned deploy failure: just clean it
        lifecycle.fire_node(s, node, "done", actor=actor.actor)  # deleting → cleaning
    node.job_id = ctx.enqueue_after_commit(s, job, arg, retry=jobqueue.LOCK_RETRY)
    return node


def _locked(node: Node) -> str:
    return (
        f"node is locked by {node.reservation}; try again later (if that worker died, the "
        f"reconciler frees it, or an admin can: DELETE /v1/nodes/{node.id}/lock)"
    )


def _mark_instance_deleting(s: Session, node: Node, actor: Principal) -> None:
    inst = s.get(Instance, node.instance_id)
    if inst is not None and inst.status != "DELETING":
        lifecycle.fire_instance(s, inst, "delete", actor=actor.actor, reason="node undeployed")


def power(ctx: Context, s: Session, node: Node, target: str, actor: Principal) -> Node:
    if target not in POWER_TARGETS:
        raise Invalid(
            f"unknown power target '{target}'; allowed: {', '.join(POWER_TARGETS)}", field="target"
        )
    if node.reservation:
        raise Conflict(_locked(node))
    events.record(
        s,
        "node.power_requested",
        "node",
        node.id,
        actor=actor.actor,
        project_id=node.owner,
        target=target,
    )
    node.job_id = ctx.enqueue_after_commit(
        s, "set_power", node.id, target, actor.actor, retry=jobqueue.LOCK_RETRY
    )
    return node


def set_maintenance(s: Session, node: Node, on: bool, reason: str | None, actor: Principal) -> Node:
    """An admin's maintenance. It replaces any fault-maintenance the system set (the admin
    now owns it, so the power sync loop will not lift it), and unsetting it clears both."""
    node.maintenance = on
    node.maintenance_reason = reason if on else None
    node.fault = None
    if not on:
        node.power_sync_failures = 0
    events.record(
        s,
        "node.maintenance",
        "node",
        node.id,
        actor=actor.actor,
        project_id=node.owner,
        maintenance=on,
        reason=node.maintenance_reason,
    )
    return node


def sensors(ctx: Context, node_id: str) -> dict[str, Any]:
    """Sensor readings, read by a worker (the API never talks to BMCs itself)."""
    wait = int(ctx.settings.bmc_timeout) + 10
    result = jobqueue.call(ctx.queue, "read_sensors", node_id, wait=wait)
    if result is None:
        raise Unavailable(f"no worker read the sensors within {wait} s; are workers running?")
    if "error" in result:
        raise BadGateway(
            f"the BMC did not give its sensors: {result['error']}", kind=result.get("kind")
        )
    return {"node_uuid": node_id, **result}


def inventory(s: Session, node: Node) -> NodeInventory:
    found = s.get(NodeInventory, node.id)
    if found is None:
        raise NotFound(
            f"node {node.id} has not been inspected; PUT its states/provision with target 'inspect'"
        )
    return found


def validate(ctx: Context, s: Session, node: Node) -> dict[str, dict[str, Any]]:
    """Cheap checks of driver_info (no hardware is touched), per interface."""
    try:
        driver = get_driver(node.driver)
    except DriverError as exc:
        return {i: {"result": False, "reason": str(exc)} for i in Driver.INTERFACES}
    try:
        task = node_task(ctx, s, node)  # type: ignore[arg-type]
    except ValueError as exc:  # a secret no configured key opens (BMS_SECRET_KEYS changed?)
        return {i: {"result": False, "reason": f"driver_info: {exc}"} for i in Driver.INTERFACES}
    return {**driver.validate(task), "network": validate_wiring(node)}


def validate_wiring(node: Node) -> dict[str, Any]:
    """The network "interface": the node's switch wiring (its ports' switches), checked
    without touching a switch. A node with no switch-wired port is valid (flat wiring)."""
    return {"result": True, "reason": None}
