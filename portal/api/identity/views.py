"""/v1/projects, /v1/users, tokens and quotas."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from portal.api.auth import admin_only, authenticate, principal
from portal.api.common import Blueprint, ctx, tx
from portal.api.identity.schemas import (
    ProjectCreate,
    ProjectList,
    ProjectListArgs,
    ProjectOut,
    QuotaOut,
    QuotaUpdate,
    TokenCreate,
    TokenOut,
    UserCreate,
    UserList,
    UserListArgs,
    UserOut,
)
from portal.api.pagination import page
from portal.core.errors import Invalid, NotFound
from portal.services import identity as svc
from portal.services.lookup import get_or_404
from tenants import quotas
from tenants.models import ApiToken, Project, User

blp = Blueprint(
    "identity", __name__, url_prefix="/v1", description="Projects, users, tokens, quotas"
)
blp.before_request(authenticate)


@blp.route("/projects")
class Projects(MethodView):
    @admin_only
    @blp.arguments(ProjectListArgs, location="query")
    @blp.response(200, ProjectList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List projects (tenants)."""
        with tx() as s:
            items, next_url = page(s, select(Project), Project, args, ("created_at", "name"))
            return {"projects": items, "next": next_url}

    @admin_only
    @blp.arguments(ProjectCreate)
    @blp.response(201, ProjectOut)
    def post(self, data: dict[str, Any]) -> Project:
        """Create a project with the default quota."""
        with tx() as s:
            return svc.create_project(ctx(), s, data["name"], data.get("description"), principal())


def _visible_project(s: Any, project_id: str) -> Project:
    if not principal().sees_project(project_id):
        raise NotFound(f"project '{project_id}' not found")
    return get_or_404(s, Project, project_id, "project")


@blp.route("/projects/<project_id>")
class ProjectItem(MethodView):
    @blp.response(200, ProjectOut)
    def get(self, project_id: str) -> Project:
        """Show a project (your own, or any for admins)."""
        with tx() as s:
            return _visible_project(s, project_id)


@blp.route("/projects/<project_id>/quota")
class ProjectQuota(MethodView):
    @blp.response(200, QuotaOut)
    def get(self, project_id: str) -> Any:
        """Limits and usage."""
        with tx() as s:
            _visible_project(s, project_id)
            return quotas.ensure(s, project_id, ctx().quota_defaults)

    @admin_only
    @blp.arguments(QuotaUpdate)
    @blp.response(200, QuotaOut)
    def put(self, data: dict[str, Any], project_id: str) -> Any:
        """Set limits (-1: unlimited)."""
        with tx() as s:
            get_or_404(s, Project, project_id, "project")
            return svc.set_quota(ctx(), s, project_id, data, principal())


@blp.route("/users")
class Users(MethodView):
    @admin_only
    @blp.arguments(UserListArgs, location="query")
    @blp.response(200, UserList)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List users."""
        stmt = select(User)
        if "project_id" in args:
            stmt = stmt.where(User.project_id == args["project_id"])
        with tx() as s:
            items, next_url = page(s, stmt, User, args, ("created_at", "name"))
            return {"users": items, "next": next_url}

    @admin_only
    @blp.arguments(UserCreate)
    @blp.response(201, UserOut)
    def post(self, data: dict[str, Any]) -> User:
        """Create a user in a project with a role (admin, member, reader)."""
        with tx() as s:
            project = s.get(Project, data["project_id"])
            if project is None:
                raise Invalid(f"project '{data['project_id']}' not found", field="project_id")
            return svc.create_user(s, data["name"], project, data["role"], principal())


@blp.route("/users/<user_id>/tokens")
class UserTokens(MethodView):
    @blp.arguments(TokenCreate)
    @blp.response(201, TokenOut)
    def post(self, data: dict[str, Any], user_id: str) -> dict[str, Any]:
        """Issue an API token (admins: for anyone; users: for themselves). Shown once."""
        if not principal().is_admin and user_id != principal().user_id:
            raise NotFound(f"user '{user_id}' not found")
        with tx() as s:
            user = get_or_404(s, User, user_id, "user")
            row, clear = svc.create_token(
                s, user, data.get("description"), data.get("expires_at"), principal()
            )
            # Raw attributes: the response schema (TokenOut) serializes them once.
            fields = (
                "id",
                "user_id",
                "prefix",
                "description",
                "expires_at",
                "revoked",
                "created_at",
            )
            return {**{f: getattr(row, f) for f in fields}, "token": clear}


@blp.route("/tokens/<token_id>")
class TokenItem(MethodView):
    @blp.response(204)
    def delete(self, token_id: str) -> None:
        """Revoke a token (admins: any; users: their own)."""
        with tx() as s:
            token = s.get(ApiToken, token_id)
            if token is None or not (principal().is_admin or token.user_id == principal().user_id):
                raise NotFound(f"token '{token_id}' not found")
            svc.revoke_token(s, token, principal())
