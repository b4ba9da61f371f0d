"""The OpenAPI 3 document describes every /v1 endpoint; the browsable UI is served."""

from __future__ import annotations


def test_openapi_document_lists_every_resource(client):
    r = client.get("/v1/openapi.json")
    assert r.status_code == 200
    spec = r.json
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    for path in (
        "/v1/nodes",
        "/v1/nodes/{ident}/states/provision",
        "/v1/nodes/import",
        "/v1/ports",
        "/v1/flavors",
        "/v1/flavors/{ident}/access",
        "/v1/images",
        "/v1/images/{image_id}/file",
        "/v1/instances",
        "/v1/keypairs",
        "/v1/projects",
        "/v1/projects/{project_id}/quota",
        "/v1/users",
        "/v1/events",
    ):
        assert path in paths, path
    create = spec["paths"]["/v1/instances"]["post"]
    assert "202" in create["responses"]
    assert "InstanceCreate" in str(create["requestBody"])
    assert spec["components"]["securitySchemes"]["token"]["name"] == "X-Auth-Token"


def test_browsable_docs(client):
    r = client.get("/v1/docs")
    assert r.status_code == 200 and b"swagger" in r.data.lower()
