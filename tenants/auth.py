"""Authentication backends: a token in, a :class:`Principal` (or ``None``) out.

The local backend checks API tokens stored hashed in the database. A Keystone
backend (keystoneauth1) plugs in behind the same interface.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.core.db import utcnow
from tenants.models import ApiToken, Project, User
from tenants.principal import Principal

TOKEN_PREFIX = "bms_"


class AuthBackend(Protocol):
    def authenticate(self, session: Session, token: str) -> Principal | None: ...


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, user: User, description: str | None = None, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token; the clear text is returned once and never stored."""
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        token_hash=hash_token(clear),
        prefix=clear[:12],
        description=description,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, clear


class LocalAuth:
    """API tokens issued by this portal."""

    def authenticate(self, session: Session, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = session.execute(
            select(
                ApiToken.expires_at,
                ApiToken.revoked,
                User.id,
                User.name,
                User.role,
                User.enabled,
                Project.id,
                Project.enabled,
            )
            .join(User, User.id == ApiToken.user_id)
            .join(Project, Project.id == User.project_id)
            .where(ApiToken.token_hash == hash_token(token))
        ).one_or_none()
        if row is None:
            return None
        expires_at, revoked, user_id, user_name, role, user_enabled, project_id, project_on = row
        if revoked or not user_enabled or not project_on:
            return None
        if expires_at is not None and expires_at <= utcnow():
            return None
        return Principal(user_id=user_id, user_name=user_name, project_id=project_id, role=role)
