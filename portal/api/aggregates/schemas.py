from __future__ import annotations

from marshmallow import Schema, fields, validate

from portal.api.fields import text
from portal.api.pagination import ListArgs, sort_keys

NAME = text(
    "letters, digits, '_', '.', ':' and '-', starting with a letter or digit",
    max=255,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
)
META_VALUE = fields.String(validate=validate.Length(max=255))


class AggregateCreate(Schema):
    name = fields.String(required=True, validate=NAME)
    availability_zone = fields.String(allow_none=True, validate=NAME)
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64)),
        values=META_VALUE,
        load_default=dict,
        metadata={"description": 'location and more, e.g. {"rack": "r12", "row": "b"}'},
    )
    nodes = fields.List(fields.String(), metadata={"description": "node names or ids"})
    projects = fields.List(
        fields.String(), metadata={"description": "if set, only these projects get the nodes"}
    )


class AggregateUpdate(Schema):
    name = fields.String(validate=NAME)
    availability_zone = fields.String(allow_none=True, validate=NAME)
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64)), values=META_VALUE
    )
    nodes = fields.List(fields.String())
    projects = fields.List(fields.String())


class AggregateOut(Schema):
    id = fields.String()
    name = fields.String()
    availability_zone = fields.String(allow_none=True)
    metadata = fields.Dict()
    nodes = fields.List(fields.String())
    projects = fields.List(fields.String())
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)


class AggregateList(Schema):
    aggregates = fields.List(fields.Nested(AggregateOut))
    next = fields.String(allow_none=True)


class AggregateListArgs(ListArgs):
    sort_key = sort_keys("created_at", "name")
    availability_zone = fields.String()
