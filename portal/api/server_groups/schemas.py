from __future__ import annotations

from marshmallow import Schema, fields, validate

from portal.api.fields import text
from portal.api.pagination import ListArgs, sort_keys
from portal.core.models.placement import POLICIES, SCOPES


class ServerGroupCreate(Schema):
    name = fields.String(
        required=True,
        validate=text(
            "letters, digits, '_', '.', '-' and spaces", max=255, pattern=r"^[A-Za-z0-9_. -]*$"
        ),
    )
    policy = fields.String(required=True, validate=validate.OneOf(POLICIES))
    scope = fields.String(
        load_default="node",
        validate=validate.OneOf(SCOPES),
        metadata={"description": "where the policy applies: the same node, rack or zone"},
    )


class ServerGroupOut(Schema):
    id = fields.String()
    name = fields.String()
    project_id = fields.String()
    policy = fields.String()
    scope = fields.String()
    members = fields.List(fields.String())
    created_at = fields.DateTime()


class ServerGroupList(Schema):
    server_groups = fields.List(fields.Nested(ServerGroupOut))
    next = fields.String(allow_none=True)


class ServerGroupListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name")
    name = fields.String()
