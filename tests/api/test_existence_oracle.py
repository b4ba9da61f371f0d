"""No existence oracle: what a tenant is told never depends on whether an id it cannot see
names something (another project, another tenant's resource)."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_tenancy import new_image
from tests.helpers import seed_world


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


def _answer(r):
    body = r.get_json(silent=True)
    return r.status_code, sorted(body) if isinstance(body, dict) else body


def test_image_member_answers_the_same_for_an_existing_and_a_random_project(client, world) -> None:
    img = new_image(client, world.alice, name="shared", visibility="shared")
    url = f"/v1/images/{img['id']}/members"
    existing = client.post(url, json={"project_id": world.bob_project}, headers=world.alice)
    random = client.post(url, json={"project_id": str(uuid.uuid4())}, headers=world.alice)
    assert existing.status_code == random.status_code == 204
    assert existing.get_data() == random.get_data()
    # The existing project got access; the random id granted nothing to anyone.
    assert client.get(f"/v1/images/{img['id']}", headers=world.bob).status_code == 200
    # The events the owner can read say the same for both.
    events = client.get("/v1/events?type=image.member_added", headers=world.alice).json
    members = sorted(e["payload"]["member"] for e in events["events"])
    assert len(members) == 2


def test_image_member_on_an_image_one_cannot_see_is_404_whatever_the_project(client, world) -> None:
    img = new_image(client, world.alice, name="alices", visibility="shared")
    url = f"/v1/images/{img['id']}/members"
    a = client.post(url, json={"project_id": world.alice_project}, headers=world.bob)
    b = client.post(url, json={"project_id": str(uuid.uuid4())}, headers=world.bob)
    assert a.status_code == b.status_code == 404
    assert _answer(a) == _answer(b)
    assert a.json["detail"] == b.json["detail"]


def test_image_member_not_shared_is_409_whatever_the_project(client, world) -> None:
    img = new_image(client, world.alice, name="private")
    url = f"/v1/images/{img['id']}/members"
    a = client.post(url, json={"project_id": world.bob_project}, headers=world.alice)
    b = client.post(url, json={"project_id": str(uuid.uuid4())}, headers=world.alice)
    assert a.status_code == b.status_code == 409
    assert a.json["detail"] == b.json["detail"]


def _same(a, b) -> None:
    """Same status, title and field: only the echoed id may differ."""
    assert a.status_code == b.status_code, (a.json, b.json)
    ja, jb = a.json, b.json
    assert (ja.get("title"), ja.get("field")) == (jb.get("title"), jb.get("field"))


def test_other_projects_server_groups_and_keypairs_answer_as_missing_ones(client, world) -> None:
    from tests.api.test_tenancy import boot, openssh_key

    group = client.post(
        "/v1/server-groups", json={"name": "g", "policy": "affinity"}, headers=world.bob
    )
    assert group.status_code == 201, group.json
    gid, random_id = group.json["id"], str(uuid.uuid4())
    a = client.get(f"/v1/server-groups/{gid}", headers=world.alice)
    b = client.get(f"/v1/server-groups/{random_id}", headers=world.alice)
    assert a.status_code == b.status_code == 404
    assert a.json["detail"].replace(gid, "X") == b.json["detail"].replace(random_id, "X")
    a = boot(client, world, world.alice, server_group=gid)
    b = boot(client, world, world.alice, server_group=random_id)
    _same(a, b)
    assert a.json["detail"].replace(gid, "X") == b.json["detail"].replace(random_id, "X")
    r = client.post(
        "/v1/keypairs", json={"name": "bobs", "public_key": openssh_key()}, headers=world.bob
    )
    assert r.status_code == 201
    a = boot(client, world, world.alice, key_names=["bobs"])
    b = boot(client, world, world.alice, key_names=["nobodys"])
    _same(a, b)
    assert a.json["detail"].replace("bobs", "X") == b.json["detail"].replace("nobodys", "X")
    # A keypair name another user has is free for alice (names are per user: no clash).
    r = client.post(
        "/v1/keypairs", json={"name": "bobs", "public_key": openssh_key()}, headers=world.alice
    )
    assert r.status_code == 201
