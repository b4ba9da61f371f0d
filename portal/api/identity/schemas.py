from __future__ import annotations

from marshmallow import Schema, fields, validate

from portal.api.fields import INT32_MAX, Int64, text
from portal.api.pagination import ListArgs, sort_keys
from tenants.roles import ROLES

NAME = text(
    "letters, digits, '_', '.', '@' and '-', starting with a letter or digit",
    max=255,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$",
)


class ProjectCreate(Schema):
    name = fields.String(required=True, validate=NAME)
    description = fields.String(allow_none=True, validate=validate.Length(max=1000))


class ProjectOut(Schema):
    id = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    created_at = fields.DateTime()


class ProjectList(Schema):
    projects = fields.List(fields.Nested(ProjectOut))
    next = fields.String(allow_none=True)


class UserCreate(Schema):
    name = fields.String(required=True, validate=NAME)
    project_id = fields.String(required=True)
    role = fields.String(load_default="member", validate=validate.OneOf(ROLES))


class UserOut(Schema):
    id = fields.String()
    name = fields.String()
    project_id = fields.String()
    role = fields.String()
    enabled = fields.Boolean()
    created_at = fields.DateTime()


class UserList(Schema):
    users = fields.List(fields.Nested(UserOut))
    next = fields.String(allow_none=True)


class ProjectListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name")


class UserListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name")
    project_id = fields.String()


class TokenCreate(Schema):
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    expires_at = fields.AwareDateTime(allow_none=True)


class TokenOut(Schema):
    id = fields.String()
    user_id = fields.String()
    prefix = fields.String()
    description = fields.String(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    revoked = fields.Boolean()
    created_at = fields.DateTime()
    token = fields.String(metadata={"description": "shown once, at creation"})


QUOTA_RESOURCES = ("instances", "vcpus", "ram_mb", "networks", "subnets")


class QuotaOut(Schema):
    project_id = fields.String()
    limits = fields.Function(lambda q: {r: getattr(q, r) for r in QUOTA_RESOURCES})
    in_use = fields.Function(lambda q: {r: getattr(q, f"{r}_used") for r in QUOTA_RESOURCES})


class QuotaUpdate(Schema):
    instances = Int64(min=-1, max=10**9)
    vcpus = Int64(min=-1, max=10**9)
    ram_mb = Int64(min=-1, max=INT32_MAX)
    networks = Int64(min=-1, max=10**6)
    subnets = Int64(min=-1, max=10**6)
