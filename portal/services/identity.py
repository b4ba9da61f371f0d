"""Admin management of projects, users, tokens and quotas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import events
from portal.core.errors import Conflict, Invalid
from portal.services.context import Context
from tenants import quotas
from tenants.auth import issue_token
from tenants.models import ApiToken, Project, Quota, User
from tenants.principal import Principal
from tenants.roles import ROLES

SYSTEM = Principal(user_id="system", user_name="system", project_id="", role="admin")


def create_project(
    ctx: Context, s: Session, name: str, description: str | None, actor: Principal = SYSTEM
) -> Project:
    project = Project(name=name, description=description)
    try:
        with s.begin_nested():
            s.add(project)
    except IntegrityError:
        raise Conflict(f"a project named '{name}' already exists", field="name") from None
    quotas.ensure(s, project.id, ctx.quota_defaults)
    events.record(
        s,
        "project.created",
        "project",
        project.id,
        actor=actor.actor,
        project_id=project.id,
        name=name,
    )
    return project


def create_user(
    s: Session, name: str, project: Project, role: str, actor: Principal = SYSTEM
) -> User:
    if role not in ROLES:
        raise Invalid(f"unknown role '{role}'; allowed: {', '.join(ROLES)}", field="role")
    user = User(name=name, project_id=project.id, role=role)
    try:
        with s.begin_nested():
            s.add(user)
    except IntegrityError:
        raise Conflict(f"a user named '{name}' already exists", field="name") from None
    events.record(
        s,
        "user.created",
        "user",
        user.id,
        actor=actor.actor,
        project_id=project.id,
        name=name,
        role=role,
    )
    return user


def create_token(
    s: Session,
    user: User,
    description: str | None,
    expires_at: datetime | None,
    actor: Principal = SYSTEM,
) -> tuple[ApiToken, str]:
    row, clear = issue_token(s, user, description, expires_at)
    events.record(
        s,
        "token.created",
        "user",
        user.id,
        actor=actor.actor,
        project_id=user.project_id,
        token_id=row.id,
        prefix=row.prefix,
    )
    return row, clear


def revoke_token(s: Session, token: ApiToken, actor: Principal) -> None:
    token.revoked = True
    events.record(s, "token.revoked", "user", token.user_id, actor=actor.actor, token_id=token.id)


def set_quota(
    ctx: Context, s: Session, project_id: str, limits: dict[str, Any], actor: Principal
) -> Quota:
    quota = quotas.ensure(s, project_id, ctx.quota_defaults)
    for key, value in limits.items():
        setattr(quota, key, value)
    events.record(
        s,
        "quota.updated",
        "project",
        project_id,
        actor=actor.actor,
        project_id=project_id,
        **limits,
    )
    return quota
