"""Agent sessions as jobs see them: a command's result, and the end of an operation.

The HTTP side (lookup, heartbeat, results) is in ``netboot.agent``; this is the part the
workers need, so it lives in the domain core that both import.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from portal.core.models import AgentSession


def result_of(session: Session, node_id: str, command_id: str) -> dict[str, Any] | None:
    """What the agent reported for ``command_id``, or None if it has not (yet)."""
    row = session.get(AgentSession, node_id)
    if row is None:
        return None
    found = (row.results or {}).get(command_id)
    return dict(found) if found is not None else None


def end(session: Session, node_id: str) -> None:
    """The operation is over: its agent token is never honoured again."""
    session.execute(
        delete(AgentSession)
        .where(AgentSession.node_id == node_id)
        .execution_options(synchronize_session=False)
    )
