"""Multi-tenancy: flavor access, image visibility and data, keypairs, quotas, events."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.helpers import IMAGE_BYTES, seed_world


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in items}


def boot(client, world, who: dict[str, str], **over: Any) -> Any:
    body = {"name": "vm", "flavor": world.flavor, "image": world.image, **over}
    return client.post("/v1/instances", json=body, headers=who)


# -- flavors -----------------------------------------------------------------------------------


def private_flavor(client, world) -> dict[str, Any]:
    r = client.post(
        "/v1/flavors",
        json={"name": "bm.secret", "vcpus": 2, "ram_mb": 2048, "disk_gb": 20, "is_public": False},
        headers=world.admin,
    )
    assert r.status_code == 201, r.json
    return r.json


def test_public_flavors_are_visible_to_every_tenant(client, world) -> None:
    for who in (world.alice, world.bob, world.reader):
        flavors = client.get("/v1/flavors", headers=who).json["flavors"]
        assert [f["name"] for f in flavors] == ["bm.small"]
        assert client.get("/v1/flavors/bm.small", headers=who).json["id"] == world.flavor


def test_private_flavor_needs_an_access_grant(client, world) -> None:
    flavor = private_flavor(client, world)
    fid = flavor["id"]
    # Without access: invisible (404, not 403), not listed, not bootable (a body naming an
    # invisible flavor is a 422 on the field, as one naming no flavor at all).
    for who in (world.alice, world.bob):
        r = client.get(f"/v1/flavors/{fid}", headers=who)
        assert r.status_code == 404 and r.mimetype == "application/problem+json"
        assert fid not in ids(client.get("/v1/flavors", headers=who).json["flavors"])
    assert boot(client, world, world.alice, flavor=fid).status_code == 422
    # Admins see every flavor.
    assert fid in ids(client.get("/v1/flavors", headers=world.admin).json["flavors"])

    r = client.post(
        f"/v1/flavors/{fid}/access", json={"project_id": world.alice_project}, headers=world.admin
    )
    assert r.status_code == 200 and r.json["projects"] == [world.alice_project]
    assert client.get(f"/v1/flavors/{fid}", headers=world.alice).status_code == 200
    assert client.get("/v1/flavors/bm.secret", headers=world.alice).json["id"] == fid
    assert fid in ids(client.get("/v1/flavors", headers=world.alice).json["flavors"])
    assert client.get(f"/v1/flavors/{fid}", headers=world.bob).status_code == 404
    assert boot(client, world, world.alice, flavor=fid).status_code == 202
    assert boot(client, world, world.bob, flavor=fid).status_code == 422

    r = client.delete(f"/v1/flavors/{fid}/access/{world.alice_project}", headers=world.admin)
    assert r.status_code == 204
    assert client.get(f"/v1/flavors/{fid}", headers=world.alice).status_code == 404


def test_flavor_access_is_admin_only_and_for_private_flavors(client, world) -> None:
    fid = private_flavor(client, world)["id"]
    r = client.post(
        f"/v1/flavors/{fid}/access", json={"project_id": world.alice_project}, headers=world.alice
    )
    assert r.status_code == 403
    r = client.post(
        f"/v1/flavors/{world.flavor}/access",
        json={"project_id": world.alice_project},
        headers=world.admin,
    )
    assert r.status_code == 409 and "public" in r.json["detail"]
    r = client.post(f"/v1/flavors/{fid}/access", json={"project_id": "nope"}, headers=world.admin)
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "project_id"


def test_disabled_flavor_disappears_for_tenants(client, world) -> None:
    r = client.patch(f"/v1/flavors/{world.flavor}", json={"disabled": True}, headers=world.admin)
    assert r.status_code == 200 and r.json["disabled"] is True
    assert client.get("/v1/flavors", headers=world.alice).json["flavors"] == []
    assert client.get(f"/v1/flavors/{world.flavor}", headers=world.alice).status_code == 404
    assert client.get(f"/v1/flavors/{world.flavor}", headers=world.admin).status_code == 200


# -- images: visibility --------------------------------------------------------------------------


def new_image(client, who, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/images", json={"name": "img", **body}, headers=who)
    assert r.status_code == 201, r.json
    return r.json


def test_private_image_of_another_tenant_is_invisible(client, world) -> None:
    img = new_image(client, world.alice, name="alice-private")
    assert img["visibility"] == "private" and img["owner"] == world.alice_project
    assert img["status"] == "queued"
    assert client.get(f"/v1/images/{img['id']}", headers=world.alice).status_code == 200
    assert client.get(f"/v1/images/{img['id']}", headers=world.reader).status_code == 200
    assert client.get(f"/v1/images/{img['id']}", headers=world.bob).status_code == 404
    assert img["id"] not in ids(client.get("/v1/images", headers=world.bob).json["images"])
    assert img["id"] in ids(client.get("/v1/images", headers=world.admin).json["images"])
    # Bob can neither change, delete nor upload to it.
    assert (
        client.patch(f"/v1/images/{img['id']}", json={"name": "x"}, headers=world.bob).status_code
        == 404
    )
    assert client.delete(f"/v1/images/{img['id']}", headers=world.bob).status_code == 404


def test_shared_image_is_visible_to_members_only(client, world) -> None:
    img = new_image(client, world.alice, name="alice-shared", visibility="shared")
    assert client.get(f"/v1/images/{img['id']}", headers=world.bob).status_code == 404
    r = client.post(
        f"/v1/images/{img['id']}/members",
        json={"project_id": world.bob_project},
        headers=world.alice,
    )
    assert r.status_code == 204
    assert client.get(f"/v1/images/{img['id']}", headers=world.bob).status_code == 200
    assert img["id"] in ids(client.get("/v1/images", headers=world.bob).json["images"])
    # A member may see it but not change it.
    r = client.patch(f"/v1/images/{img['id']}", json={"name": "mine"}, headers=world.bob)
    assert r.status_code == 403


def test_members_only_for_shared_images(client, world) -> None:
    img = new_image(client, world.alice, name="private")
    r = client.post(
        f"/v1/images/{img['id']}/members",
        json={"project_id": world.bob_project},
        headers=world.alice,
    )
    assert r.status_code == 409
    assert client.get(f"/v1/images/{img['id']}", headers=world.bob).status_code == 404


def test_only_admins_publish_public_images(client, world) -> None:
    r = client.post("/v1/images", json={"name": "pub", "visibility": "public"}, headers=world.alice)
    assert r.status_code == 403 and r.json["field"] == "visibility"
    img = new_image(client, world.alice, name="later")
    r = client.patch(f"/v1/images/{img['id']}", json={"visibility": "public"}, headers=world.alice)
    assert r.status_code == 403
    pub = new_image(client, world.admin, name="pub", visibility="public")
    assert client.get(f"/v1/images/{pub['id']}", headers=world.bob).status_code == 200


def test_image_list_filters(client, world) -> None:
    new_image(client, world.alice, name="a1")
    new_image(client, world.alice, name="a2", visibility="shared")
    names = lambda q: sorted(  # noqa: E731
        i["name"] for i in client.get(f"/v1/images?{q}", headers=world.alice).json["images"]
    )
    assert names("") == ["a1", "a2", "img"]
    assert names("visibility=shared") == ["a2"]
    assert names("status=active") == ["img"]
    assert names("name=a1") == ["a1"]


# -- images: data ---------------------------------------------------------------------------------

DATA = bytes(range(256)) * 4096  # 1 MiB, so the store writes more than one chunk boundary


def upload(client, who, image_id: str, data: bytes, **kw: Any) -> Any:
    return client.put(
        f"/v1/images/{image_id}/file",
        data=data,
        headers={**who, "Content-Type": kw.get("content_type", "application/octet-stream")},
    )


def test_upload_verifies_sha256_and_download_returns_the_same_bytes(ctx, client, world) -> None:
    sha = hashlib.sha256(DATA + b"!").hexdigest()
    img = new_image(client, world.alice, sha256=sha.upper())
    r = upload(client, world.alice, img["id"], DATA + b"!")
    assert r.status_code == 200, r.json
    assert r.json["status"] == "active"
    assert r.json["size"] == len(DATA) + 1 and r.json["sha256"] == sha

    r = client.get(f"/v1/images/{img['id']}/file", headers=world.alice)
    assert r.status_code == 200 and r.data == DATA + b"!"
    assert r.mimetype == "application/octet-stream"
    # A second upload to an active image is refused.
    assert upload(client, world.alice, img["id"], b"again").status_code == 409


def test_upload_with_a_checksum_mismatch_is_422_and_the_image_stays_queued(
    ctx, client, world
) -> None:
    img = new_image(client, world.alice, sha256=hashlib.sha256(b"expected").hexdigest())
    r = upload(client, world.alice, img["id"], b"something else")
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert r.json["errors"][0]["field"] == "sha256"
    assert r.json["expected"] == hashlib.sha256(b"expected").hexdigest()
    assert r.json["actual"] == hashlib.sha256(b"something else").hexdigest()
    shown = client.get(f"/v1/images/{img['id']}", headers=world.alice).json
    assert shown["status"] == "queued" and shown["size"] is None
    assert shown["sha256"] == hashlib.sha256(b"expected").hexdigest()  # the declared one
    assert ctx.store.path(img["id"]) is None  # nothing half-written left in the store
    assert not list(ctx.settings.image_dir.glob(f".{img['id']}*"))
    assert client.get(f"/v1/images/{img['id']}/file", headers=world.alice).status_code == 409
    # The right bytes are still accepted afterwards.
    assert upload(client, world.alice, img["id"], b"expected").status_code == 200


def test_upload_needs_octet_stream_and_ownership(client, world) -> None:
    img = new_image(client, world.alice)
    r = upload(client, world.alice, img["id"], b"x", content_type="application/json")
    assert r.status_code == 415 and r.json["expected"] == "application/octet-stream"
    assert upload(client, world.reader, img["id"], b"x").status_code == 403
    assert upload(client, world.bob, img["id"], b"x").status_code == 404


def test_download_supports_range_requests(client, world) -> None:
    r = client.get(f"/v1/images/{world.image}/file", headers={**world.bob, "Range": "bytes=0-15"})
    assert r.status_code == 206
    assert r.data == IMAGE_BYTES[:16]
    assert r.headers["Content-Range"] == f"bytes 0-15/{len(IMAGE_BYTES)}"
    r = client.get(f"/v1/images/{world.image}/file", headers={**world.bob, "Range": "bytes=-5"})
    assert r.status_code == 206 and r.data == IMAGE_BYTES[-5:]
    r = client.get(f"/v1/images/{world.image}/file", headers=world.bob)
    assert r.status_code == 200 and r.headers.get("Accept-Ranges") == "bytes"
    assert hashlib.sha256(r.data).hexdigest() == hashlib.sha256(IMAGE_BYTES).hexdigest()


# -- keypairs ------------------------------------------------------------------------------------


def openssh_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " me@laptop"


def test_keypair_import_computes_the_openssh_fingerprint(client, world) -> None:
    pub = openssh_key()
    blob = base64.b64decode(pub.split()[1])
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    r = client.post("/v1/keypairs", json={"name": "laptop", "public_key": pub}, headers=world.alice)
    assert r.status_code == 201, r.json
    assert r.json["fingerprint"] == expected and r.json["public_key"] == pub
    assert r.headers["Location"] == "/v1/keypairs/laptop"
    assert client.get("/v1/keypairs/laptop", headers=world.alice).json["fingerprint"] == expected
    # Keypairs belong to a user: others do not see them.
    assert client.get("/v1/keypairs/laptop", headers=world.bob).status_code == 404
    assert client.get("/v1/keypairs", headers=world.bob).json["keypairs"] == []
    r = client.post("/v1/keypairs", json={"name": "laptop", "public_key": pub}, headers=world.alice)
    assert r.status_code == 409
    # An instance snapshots the key by name.
    r = boot(client, world, world.alice, key_names=["laptop"])
    assert r.status_code == 202 and r.json["key_names"] == ["laptop"]
    assert boot(client, world, world.alice, key_names=["nope"]).status_code == 422


def test_invalid_public_key_is_422(client, world) -> None:
    for public_key in (
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP== me",
        "ssh-ed25519 !!!!not-base64!!!! me",
        "not a key at all, just text",
        "ssh-ed25519",
    ):
        r = client.post(
            "/v1/keypairs", json={"name": "bad", "public_key": public_key}, headers=world.alice
        )
        assert r.status_code == 422 and r.mimetype == "application/problem+json", public_key
        assert r.json["errors"][0]["field"] == "public_key"
    assert client.get("/v1/keypairs", headers=world.alice).json["keypairs"] == []


def test_two_keys_in_one_is_422(client, world) -> None:
    r = client.post(
        "/v1/keypairs",
        json={"name": "two", "public_key": openssh_key() + "\n" + openssh_key()},
        headers=world.alice,
    )
    assert r.status_code == 422


def test_keypair_delete(client, world) -> None:
    client.post(
        "/v1/keypairs", json={"name": "k", "public_key": openssh_key()}, headers=world.alice
    )
    assert client.delete("/v1/keypairs/k", headers=world.bob).status_code == 404
    assert client.delete("/v1/keypairs/k", headers=world.alice).status_code == 204
    assert client.get("/v1/keypairs/k", headers=world.alice).status_code == 404


# -- quotas --------------------------------------------------------------------------------------


def test_quota_is_enforced_and_usage_is_visible(client, world) -> None:
    url = f"/v1/projects/{world.alice_project}/quota"
    r = client.put(url, json={"instances": 1}, headers=world.admin)
    assert r.status_code == 200, r.json
    assert r.json["limits"]["instances"] == 1
    assert r.json["in_use"] == {
        "instances": 0,
        "vcpus": 0,
        "ram_mb": 0,
        "networks": 0,
        "subnets": 0,
    }

    assert boot(client, world, world.alice, name="one").status_code == 202
    r = boot(client, world, world.alice, name="two")
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    assert r.json["title"] == "Quota exceeded"
    assert "instances (limit 1, in use 1, requested 1)" in r.json["detail"]

    quota = client.get(url, headers=world.alice).json
    assert quota["in_use"] == {
        "instances": 1,
        "vcpus": 4,
        "ram_mb": 8192,
        "networks": 0,
        "subnets": 0,
    }
    assert quota["limits"]["instances"] == 1
    names = [i["name"] for i in client.get("/v1/instances", headers=world.alice).json["instances"]]
    assert names == ["one"]
    # Bob's project is not affected by Alice's quota.
    assert boot(client, world, world.bob, name="b1").status_code == 202
    assert boot(client, world, world.bob, name="b2").status_code == 202


def test_vcpu_quota_and_unlimited(client, world) -> None:
    url = f"/v1/projects/{world.alice_project}/quota"
    client.put(url, json={"instances": -1, "vcpus": 6}, headers=world.admin)
    assert boot(client, world, world.alice, name="a").status_code == 202  # 4 of 6 vcpus
    r = boot(client, world, world.alice, name="b")
    assert r.status_code == 403 and "vcpus (limit 6, in use 4, requested 4)" in r.json["detail"]
    client.put(url, json={"vcpus": -1}, headers=world.admin)
    assert boot(client, world, world.alice, name="b").status_code == 202


def test_quota_is_released_when_an_instance_is_deleted(client, world, jobs) -> None:
    url = f"/v1/projects/{world.alice_project}/quota"
    client.put(url, json={"instances": 1}, headers=world.admin)
    iid = boot(client, world, world.alice).json["id"]
    jobs()  # no nodes: the build fails with no valid host, which keeps the reservation
    assert client.get(f"/v1/instances/{iid}", headers=world.alice).json["status"] == "ERROR"
    assert client.delete(f"/v1/instances/{iid}", headers=world.alice).status_code == 202
    jobs()
    assert client.get(url, headers=world.alice).json["in_use"]["instances"] == 0
    assert boot(client, world, world.alice, name="again").status_code == 202


def test_invalid_quota_body_is_422(client, world) -> None:
    url = f"/v1/projects/{world.alice_project}/quota"
    for body, field in (
        ({"instances": -2}, "instances"),
        ({"vcpus": "many"}, "vcpus"),
        ({"gpus": 1}, "gpus"),
    ):
        r = client.put(url, json=body, headers=world.admin)
        assert r.status_code == 422 and r.json["errors"][0]["field"] == field, body
    assert client.get(url, headers=world.alice).json["limits"]["instances"] == 10


# -- events --------------------------------------------------------------------------------------


def test_tenants_see_only_their_own_projects_events(client, world) -> None:
    a = boot(client, world, world.alice, name="a").json["id"]
    b = boot(client, world, world.bob, name="b").json["id"]

    alice = client.get("/v1/events?limit=1000", headers=world.alice).json["events"]
    assert alice and {e["project_id"] for e in alice} == {world.alice_project}
    assert a in {e["resource_id"] for e in alice} and b not in {e["resource_id"] for e in alice}
    # Asking for another project's events does not widen a tenant's view.
    sneaky = client.get(
        f"/v1/events?project_id={world.bob_project}&limit=1000", headers=world.alice
    ).json["events"]
    assert {e["project_id"] for e in sneaky} == {world.alice_project}
    # The reader of the same project sees the same history.
    reader = client.get("/v1/events?limit=1000", headers=world.reader).json["events"]
    assert [e["id"] for e in reader] == [e["id"] for e in alice]

    admin = client.get("/v1/events?limit=1000", headers=world.admin).json["events"]
    projects = {e["project_id"] for e in admin}
    assert {world.alice_project, world.bob_project, None} <= projects
    assert [e["id"] for e in admin] == sorted(e["id"] for e in admin)
    only_bob = client.get(
        f"/v1/events?project_id={world.bob_project}&limit=1000", headers=world.admin
    ).json["events"]
    assert only_bob and {e["project_id"] for e in only_bob} == {world.bob_project}


def test_event_filters_and_paging(client, world) -> None:
    iid = boot(client, world, world.alice).json["id"]
    client.delete(f"/v1/instances/{iid}", headers=world.alice)

    created = client.get("/v1/events?type=instance.created", headers=world.alice).json["events"]
    assert [e["resource_id"] for e in created] == [iid]
    assert created[0]["actor"] == "user:alice" and created[0]["payload"]["flavor"] == "bm.small"

    mine = client.get(f"/v1/events?resource_id={iid}", headers=world.alice).json["events"]
    assert [e["type"] for e in mine] == ["instance.created", "instance.status"]
    assert mine[1]["payload"]["status"] == "DELETING"
    by_type = client.get(
        "/v1/events?resource_type=instance&type=instance.status", headers=world.alice
    ).json["events"]
    assert [e["id"] for e in by_type] == [mine[1]["id"]]

    everything = client.get("/v1/events?limit=1000", headers=world.admin).json["events"]
    first = client.get("/v1/events?limit=2", headers=world.admin).json
    assert [e["id"] for e in first["events"]] == [e["id"] for e in everything[:2]]
    assert f"marker={everything[1]['id']}" in first["next"]
    rest = client.get(f"/v1/events?limit=1000&marker={everything[1]['id']}", headers=world.admin)
    assert [e["id"] for e in rest.json["events"]] == [e["id"] for e in everything[2:]]
    assert rest.json["next"] is None
    future = client.get("/v1/events?since=2999-01-01T00:00:00%2B00:00", headers=world.admin)
    assert future.status_code == 200 and future.json["events"] == []
    past = client.get(
        "/v1/events?since=2000-01-01T00:00:00%2B00:00&limit=1000", headers=world.admin
    )
    assert len(past.json["events"]) == len(everything)
