from __future__ import annotations

from marshmallow import Schema, fields, validate

from portal.api.fields import text
from portal.api.pagination import ListArgs, sort_keys


class KeypairCreate(Schema):
    name = fields.String(
        required=True,
        validate=text(
            "letters, digits, '_', '.', '-' and spaces", max=255, pattern=r"^[A-Za-z0-9_. -]*$"
        ),
    )
    public_key = fields.String(required=True, validate=validate.Length(min=16, max=16384))


class KeypairOut(Schema):
    id = fields.String()
    name = fields.String()
    type = fields.String()
    public_key = fields.String()
    fingerprint = fields.String()
    user_id = fields.String()
    created_at = fields.DateTime()


class KeypairList(Schema):
    keypairs = fields.List(fields.Nested(KeypairOut))
    next = fields.String(allow_none=True)


class KeypairListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name")
    name = fields.String()
