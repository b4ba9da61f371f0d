"""The portal's side of the deploy agent protocol (docs/deploy.md, "Agent protocol").

Plain functions on a session, so they are callable without HTTP. A command is what a
deploy step left in the node's ``driver_internal_info["agent_command"]`` before it
handed over ("wait"); the session records what was handed out and what came back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from netboot import tokens
from portal.core import events
from portal.core.db import utcnow
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from portal.core.models import AgentSession, Node, Port
from portal.core.states import (
    CLEAN_WAIT,
    CLEANING,
    DEPLOY_WAIT,
    DEPLOYING,
    INSPECT_WAIT,
    INSPECTING,
)

# States in which a node runs the deploy ramdisk and its agent may call in.
AGENT_STATES = frozenset({DEPLOYING, DEPLOY_WAIT, CLEANING, CLEAN_WAIT, INSPECTING, INSPECT_WAIT})
HEARTBEAT_INTERVAL = 5  # seconds between an agent's heartbeats
ACTOR = "agent"


@dataclass(frozen=True)
class Lookup:
    node_id: str
    token: str
    heartbeat_interval: int = HEARTBEAT_INTERVAL


def _normalize(mac: str) -> str:
    return mac.strip().lower().replace("-", ":")


def lookup(s: Session, macs: list[str], boot_token: str | None) -> Lookup:
    """The node a booted agent runs on, and its agent token: handed out once per operation."""
    wanted = sorted({_normalize(m) for m in macs if isinstance(m, str)})
    if not wanted:
        raise Invalid("macs: at least one MAC address is required", field="macs")
    node_ids = set(s.scalars(select(Port.node_id).where(Port.address.in_(wanted))))
    if len(node_ids) != 1:
        raise NotFound("no node with these MACs is waiting for an agent")
    node = s.get(Node, node_ids.pop(), with_for_update=True)
    if node is None or node.provision_state not in AGENT_STATES:
        raise NotFound("no node with these MACs is waiting for an agent")
    boot_hash = (node.driver_internal_info or {}).get("boot_token_hash")
    if not tokens.matches(boot_token, boot_hash):
        raise Unauthenticated("the boot token does not match this node's netboot")
    current = s.get(AgentSession, node.id)
    if current is not None and current.boot_token_hash == boot_hash:
        raise Conflict(
            "this operation's agent token was handed out already; a second (or restarted) "
            "agent is not trusted",
            state=node.provision_state,
        )
    token = tokens.new_token()
    if current is not None:
        s.delete(current)
        s.flush()
    s.add(
        AgentSession(
            node_id=node.id,
            boot_token_hash=boot_hash,
            token_hash=tokens.digest(token),
            sent=[],
            results={},
            heartbeats=0,
            progress=0,
        )
    )
    events.record(s, "node.agent_lookup", "node", node.id, actor=ACTOR, project_id=node.owner)
    return Lookup(node.id, token)


def authenticate(s: Session, node_id: str | None, token: str | None) -> tuple[Node, AgentSession]:
    """The node and session a token belongs to; 401 if missing or wrong, 403 if its
    operation has ended."""
    if not token or not node_id:
        raise Unauthenticated("send the agent token in X-Agent-Token and the node_id")
    row = s.get(AgentSession, node_id, with_for_update=True)
    node = s.get(Node, node_id)
    if row is None or node is None:
        raise Forbidden("no operation is open for this node: the agent token has expired")
    if not tokens.matches(token, row.token_hash):
        raise Unauthenticated("wrong agent token")
    open_hash = (node.driver_internal_info or {}).get("boot_token_hash")
    if node.provision_state not in AGENT_STATES or open_hash != row.boot_token_hash:
        s.delete(row)
        raise Forbidden("the operation this agent token was for has ended")
    return node, row


def heartbeat(s: Session, node: Node, row: AgentSession, body: dict[str, Any]) -> dict[str, Any]:
    """Record liveness and progress; hand out the pending command once."""
    row.last_heartbeat_at = utcnow()
    row.heartbeats = (row.heartbeats or 0) + 1
    progress = body.get("progress")
    if isinstance(progress, int) and not isinstance(progress, bool) and 0 <= progress <= 100:
        row.progress = progress
    message = body.get("message")
    if isinstance(message, str):
        row.message = message[:255]
    command = (node.driver_internal_info or {}).get("agent_command")
    if body.get("status") == "busy":  # it is running one: the next comes when it is idle
        return {"command": None}
    if not command or command["id"] in (row.sent or []) or command["id"] in (row.results or {}):
        return {"command": None}
    row.sent = [*(row.sent or []), command["id"]]
    events.record(
        s,
        "node.agent_command",
        "node",
        node.id,
        actor=ACTOR,
        project_id=node.owner,
        command=command["name"],
        command_id=command["id"],
    )
    return {"command": {"id": command["id"], "name": command["name"], "args": command["args"]}}


def record_result(
    s: Session, node: Node, row: AgentSession, command_id: str, body: dict[str, Any]
) -> bool:
    """Store a command's outcome; True if it is the one the node's plan waits for (the
    caller then resumes the plan)."""
    if command_id not in (row.sent or []):
        raise NotFound(f"command {command_id} was not handed to this agent")
    if command_id in (row.results or {}):
        return False  # a repeated report: the first one counts
    ok = body.get("ok") is True
    result = body.get("result") if isinstance(body.get("result"), dict) else {}
    error = body.get("error") if isinstance(body.get("error"), str) else None
    row.results = {
        **(row.results or {}),
        command_id: {"ok": ok, "result": result, "error": (error or "")[:2000] or None},
    }
    pending = (node.driver_internal_info or {}).get("agent_command") or {}
    events.record(
        s,
        "node.agent_result",
        "node",
        node.id,
        actor=ACTOR,
        project_id=node.owner,
        command=pending.get("name"),
        command_id=command_id,
        ok=ok,
        error=error,
    )
    return bool(pending.get("id") == command_id)
