"""The OpenAPI document describes the API exactly (issue 16, item 4): each finding of the
outside schemathesis probe, reproduced on its own. The whole-API run is test_schemathesis."""

from __future__ import annotations

import pytest

from tests.helpers import node_body, seed_world

PROBLEM = "application/problem+json"
ERROR_STATUSES = {
    "400",
    "401",
    "403",
    "404",
    "405",
    "408",
    "409",
    "413",
    "415",
    "422",
    "429",
    "502",
    "504",
}


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


@pytest.fixture
def spec(client):
    return client.get("/v1/openapi.json").json


def operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, op


def test_every_error_response_is_a_documented_problem(spec) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    error = spec["components"]["schemas"]["ProblemError"]["properties"]
    assert set(error) == {"field", "location", "message"}
    for path, method, op in operations(spec):
        responses = op["responses"]
        assert "default" not in responses, (method, path)
        assert {"401", "429"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status in ERROR_STATUSES:
                name = response["$ref"].rsplit("/", 1)[1]
                content = spec["components"]["responses"][name]["content"]
                assert list(content) == [PROBLEM], (method, path, status)
                assert content[PROBLEM]["schema"]["$ref"].endswith("/Problem")
        if "{" in path or method != "get":
            assert "404" in responses, (method, path)
        if method != "get":
            assert {"409", "422"} <= set(responses), (method, path)
        if "requestBody" in op:
            assert op["requestBody"]["required"] is True, (method, path)
            assert {"400", "415"} <= set(responses), (method, path)


def test_role_checked_operations_document_403(spec) -> None:
    assert "403" in spec["paths"]["/v1/nodes"]["get"]["responses"]  # admin only
    assert "403" in spec["paths"]["/v1/instances"]["post"]["responses"]  # no reader
    assert "403" not in spec["paths"]["/v1/instances"]["get"]["responses"]
    sensors = spec["paths"]["/v1/nodes/{ident}/sensors"]["get"]["responses"]
    assert {"502", "504"} <= set(sensors)


def test_a_problem_answer_has_the_documented_content_type(client, world) -> None:
    r = client.get("/v1/nodes/nope", headers=world.admin)
    assert r.status_code == 404 and r.mimetype == PROBLEM
    r = client.get("/v1/nodes", headers={"X-Auth-Token": "bad"})
    assert r.status_code == 401 and r.mimetype == PROBLEM


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/nodes"),
        ("patch", "/v1/flavors/bm.small"),
        ("patch", "/v1/images/{image}"),
        ("patch", "/v1/aggregates/{aggregate}"),
        ("put", "/v1/projects/{project}/quota"),
        ("put", "/v1/nodes/{node}/maintenance"),
        ("post", "/v1/nodes/import"),
    ],
)
def test_a_required_body_cannot_be_left_out(client, world, ctx, method, path) -> None:
    agg = client.post("/v1/aggregates", json={"name": "rack1"}, headers=world.admin).json
    node = client.post("/v1/nodes", json=node_body(1), headers=world.admin).json
    url = path.format(
        image=world.image, aggregate=agg["id"], project=world.alice_project, node=node["uuid"]
    )
    before = client.get("/v1/nodes", headers=world.admin).json["nodes"]
    r = getattr(client, method)(url, headers=world.admin)
    assert r.status_code == 400 and r.mimetype == PROBLEM, (r.status_code, r.json)
    assert "body" in r.json["detail"]
    assert client.get("/v1/nodes", headers=world.admin).json["nodes"] == before
    # A body of another media type is refused as such, not read as "no fields given".
    r = getattr(client, method)(
        url,
        data=b"name=x",
        headers={**world.admin, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415 and r.mimetype == PROBLEM


def test_csv_import_given_json_is_refused(client, world) -> None:
    r = client.post(
        "/v1/nodes/import",
        data=b'[{"name": "n1", "driver": "fake"}]',
        headers={**world.admin, "Content-Type": "text/csv"},
    )
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "body", r.json
    r = client.post("/v1/nodes/import", json=[], headers=world.admin)
    assert r.status_code == 422
    r = client.post(
        "/v1/nodes/import",
        data=b"name,driver\nn1,fake\n",
        headers={**world.admin, "Content-Type": "text/csv"},
    )
    assert r.status_code == 200 and r.json["created"] == 1
    body = spec_of(client)["paths"]["/v1/nodes/import"]["post"]["requestBody"]
    assert body["required"] is True and set(body["content"]) == {"application/json", "text/csv"}


def spec_of(client):
    return client.get("/v1/openapi.json").json


def test_undeclared_method_is_405_with_the_documented_allow(client, world, spec) -> None:
    for path, item in spec["paths"].items():
        url = path.replace("{", "").replace("}", "")  # any value: routing matches first
        declared = {m.upper() for m in item if m in ("get", "post", "put", "patch", "delete")}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - declared:
            r = client.open(url, method=method, headers=world.admin)
            assert r.status_code == 405 and r.mimetype == PROBLEM, (method, path, r.status_code)
            allow = {m.strip() for m in r.headers["Allow"].split(",")}
            assert allow - {"HEAD", "OPTIONS"} == declared, (path, allow)


def test_list_sort_keys_and_markers_are_in_the_contract(client, world, spec) -> None:
    params = {p["name"]: p for p in spec["paths"]["/v1/flavors"]["get"]["parameters"]}
    assert params["sort_key"]["schema"]["enum"] == ["created_at", "name", "vcpus", "ram_mb"]
    r = client.get("/v1/flavors?sort_key=disk_gb", headers=world.admin)
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "sort_key"
    # A well-formed marker naming nothing: the item it names is not found (404).
    r = client.get("/v1/flavors?marker=nope", headers=world.admin)
    assert r.status_code == 404 and r.json["errors"][0]["field"] == "marker"
    params = {p["name"]: p for p in spec["paths"]["/v1/ports"]["get"]["parameters"]}
    assert "pattern" in params["address"]["schema"]


def test_integers_are_bounded_by_the_database_column(client, world, spec) -> None:
    # PostgreSQL's INTEGER overflowed past 2^31 - 1: a 500 from a schema-valid body.
    body = {"name": "huge", "vcpus": 1, "ram_mb": 2**40 - 1, "disk_gb": 1}
    r = client.post("/v1/flavors", json=body, headers=world.admin)
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "ram_mb"
    flavor = spec["components"]["schemas"]["FlavorCreate"]["properties"]["ram_mb"]
    assert flavor["maximum"] <= 2**31 - 1
    r = client.post(
        "/v1/nodes", json=node_body(1, properties={"memory_mb": 2**31}), headers=world.admin
    )
    assert r.status_code == 422 and "memory_mb" in r.json["detail"]


def test_json_bodies_are_taken_as_typed(client, world) -> None:
    r = client.patch(f"/v1/flavors/{world.flavor}", json={"disabled": 0}, headers=world.admin)
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "disabled"
    r = client.put(
        f"/v1/projects/{world.alice_project}/quota", json={"vcpus": 2.5}, headers=world.admin
    )
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "vcpus"
    r = client.put(
        f"/v1/projects/{world.alice_project}/quota", json={"vcpus": True}, headers=world.admin
    )
    assert r.status_code == 422
    r = client.put(
        f"/v1/projects/{world.alice_project}/quota", json={"vcpus": 40}, headers=world.admin
    )
    assert r.status_code == 200 and r.json["limits"]["vcpus"] == 40
    # Query strings are text, still converted.
    assert client.get("/v1/flavors?min_vcpus=2", headers=world.admin).status_code == 200


def test_service_checks_are_mirrored_in_the_schema(client, world, spec) -> None:
    schemas = spec["components"]["schemas"]
    assert "fake" in schemas["NodeCreate"]["properties"]["driver"]["enum"]
    assert schemas["NodeCreate"]["properties"]["traits"]["uniqueItems"] is True
    assert "manage" in schemas["ProvisionBody"]["properties"]["target"]["enum"]
    assert "capabilities" in schemas["NodePatchOp"]["properties"]["path"]["pattern"]
    node = client.post("/v1/nodes", json=node_body(1), headers=world.admin).json
    r = client.put(
        f"/v1/nodes/{node['uuid']}/states/provision", json={"target": ""}, headers=world.admin
    )
    assert r.status_code == 422
    ops = [{"op": "add", "path": "/0", "value": {}}]
    r = client.patch(f"/v1/nodes/{node['uuid']}", json=ops, headers=world.admin)
    assert r.status_code == 422 and "path" in r.json["detail"]
    r = client.post("/v1/nodes", json=node_body(2, driver="nope"), headers=world.admin)
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "driver"


def test_sensors_without_a_worker_is_a_documented_504(client, world, monkeypatch) -> None:
    # The wait for a worker's answer outlived the Redis connection's socket timeout: the
    # redis TimeoutError was a 500. Raised at once here, as the connection does after it.
    import redis
    from rq.job import Job

    def timed_out(self, timeout=0):
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(Job, "latest_result", timed_out)
    node = client.post("/v1/nodes", json=node_body(1), headers=world.admin).json
    r = client.get(f"/v1/nodes/{node['uuid']}/sensors", headers=world.admin)
    assert r.status_code == 504 and r.mimetype == PROBLEM, r.json
