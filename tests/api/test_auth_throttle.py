"""Throttling of repeated authentication failures: 429 with Retry-After per client, before
the token is looked at; shared through Redis; fails open without Redis."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest

from portal.app import create_app
from portal.services.throttle import FailureThrottle, client_address
from tests.helpers import seed_world

LIMIT = 10
WINDOW = 2
A = {"REMOTE_ADDR": "203.0.113.7"}
B = {"REMOTE_ADDR": "203.0.113.8"}
BAD = {"X-Auth-Token": "bms_not-a-real-token"}


def app_with(ctx, **over):
    values = {"auth_failure_limit": LIMIT, "auth_failure_window": WINDOW, **over}
    settings = dataclasses.replace(ctx.settings, **values)
    flask_app = create_app(settings=settings, context=ctx)
    flask_app.testing = True
    return flask_app.test_client()


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


def test_bad_tokens_are_throttled_per_client_and_the_window_expires(ctx, world) -> None:
    client = app_with(ctx)
    codes = [client.get("/v1/flavors", headers=BAD, environ_base=A).status_code for _ in range(200)]
    assert codes[:LIMIT] == [401] * LIMIT
    assert codes[LIMIT:] == [429] * (200 - LIMIT)
    r = client.get("/v1/flavors", headers=BAD, environ_base=A)
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert 1 <= int(r.headers["Retry-After"]) <= WINDOW
    assert r.json["status"] == 429 and "authentication" in r.json["detail"]
    # Refused before the token is looked at: even a valid one, from the throttled client.
    assert client.get("/v1/flavors", headers=world.alice, environ_base=A).status_code == 429
    # The public API description and docs take no credential: still served.
    assert client.get("/v1/openapi.json", environ_base=A).status_code == 200
    assert client.get("/v1/docs", environ_base=A).status_code == 200
    # Another client is not affected, valid or not.
    assert client.get("/v1/flavors", headers=world.alice, environ_base=B).status_code == 200
    assert client.get("/v1/flavors", headers=BAD, environ_base=B).status_code == 401
    # Valid tokens and requests without any token never count.
    for _ in range(3 * LIMIT):
        assert client.get("/v1/flavors", headers=world.alice, environ_base=B).status_code == 200
        assert client.get("/v1/flavors", environ_base=B).status_code == 401
    assert client.get("/v1/flavors", headers=world.alice, environ_base=B).status_code == 200
    # A token this process validated moments ago is no guess: served without asking Redis,
    # so a legitimate user is not locked out with a guesser behind the same address.
    assert client.get("/v1/flavors", headers=world.alice, environ_base=A).status_code == 200
    assert client.get("/v1/flavors", headers=BAD, environ_base=A).status_code == 429
    time.sleep(WINDOW + 0.2)
    assert client.get("/v1/flavors", headers=world.alice, environ_base=A).status_code == 200
    assert client.get("/v1/flavors", headers=BAD, environ_base=A).status_code == 401


def test_the_count_is_shared_by_api_processes_through_redis(ctx, world) -> None:
    one, two = app_with(ctx), app_with(ctx)  # two apps: as two gunicorn workers
    for i in range(LIMIT):
        assert (one if i % 2 else two).get(
            "/v1/images", headers=BAD, environ_base=A
        ).status_code == 401
    assert one.get("/v1/images", headers=BAD, environ_base=A).status_code == 429
    assert two.get("/v1/images", headers=BAD, environ_base=A).status_code == 429


def test_agent_endpoints_count_too(ctx, world) -> None:
    client = app_with(ctx)
    body = {"node_id": "00000000-0000-0000-0000-000000000000"}
    for _ in range(LIMIT):
        r = client.post("/v1/agent/heartbeat", json=body, environ_base=A)
        assert r.status_code == 401
    r = client.post(
        "/v1/agent/heartbeat", json=body, environ_base=A, headers={"X-Agent-Token": "x"}
    )
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_a_limit_of_zero_disables_the_throttle(ctx, world) -> None:
    client = app_with(ctx, auth_failure_limit=0)
    codes = {client.get("/v1/flavors", headers=BAD, environ_base=A).status_code for _ in range(50)}
    assert codes == {401}


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(ctx, world) -> None:
    # Untrusted: the header is the client's own word; its peer address counts.
    assert client_address("198.51.100.1", "1.2.3.4", ()) == "198.51.100.1"
    assert client_address("198.51.100.1", "1.2.3.4", ("10.0.0.0/8",)) == "198.51.100.1"
    # Through trusted proxies: the rightmost address that is not a proxy.
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", ("10.0.0.0/8",)) == "1.2.3.4"
    client = app_with(ctx, trusted_proxies=("10.0.0.0/8",))
    proxy = {"REMOTE_ADDR": "10.0.0.5"}
    for i in range(LIMIT):
        # A forged leftmost hop does not make a new client.
        fwd = {**BAD, "X-Forwarded-For": f"9.9.9.{i}, 1.2.3.4"}
        assert client.get("/v1/flavors", headers=fwd, environ_base=proxy).status_code == 401
    fwd = {**world.alice, "X-Forwarded-For": "1.2.3.4"}
    assert client.get("/v1/flavors", headers=fwd, environ_base=proxy).status_code == 429
    other = {**world.alice, "X-Forwarded-For": "1.2.3.5"}
    assert client.get("/v1/flavors", headers=other, environ_base=proxy).status_code == 200


def test_without_redis_the_throttle_fails_open_and_logs(caplog) -> None:
    def down():
        raise ConnectionError("redis is down")

    throttle = FailureThrottle(down, "t", limit=1, window=60)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            throttle.failed("203.0.113.7")
            assert throttle.retry_after("203.0.113.7") is None
    warnings = [r for r in caplog.records if "failing open" in r.getMessage()]
    assert len(warnings) == 1  # logged, not once per request
