"""Switch credentials are secrets like BMC passwords: canaries sent through every switch
operation must appear in no API body, event, log record or database byte, while a driver
still gets them in clear; ``bms secrets seal`` / ``rotate`` cover them too."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select, update

from portal.core.models import Switch
from portal.core.secrets import REDACTED
from portal.services.switches import credentials_in_clear
from tests.api.test_secret_canary import _database_text
from tests.helpers import node_body, seed_world

KEYS = ("password", "private_key", "private_key_passphrase", "enable_secret")


def test_switch_credentials_never_leak(client, ctx, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    admin = seed_world(ctx).admin
    canaries: list[str] = []
    bodies: list[bytes] = []

    def canary() -> str:
        value = f"swcnry{uuid.uuid4().hex[:12]}"
        canaries.append(value)
        return value

    def call(method: str, url: str, want: int, **kw: Any) -> Any:
        r = client.open(url, method=method, headers=admin, **kw)
        bodies.append(r.get_data())
        assert r.status_code == want, (url, r.status_code, r.get_data(as_text=True)[:300])
        return r.json if r.get_data() else None

    expected: dict[str, dict[str, str]] = {}
    for i, driver in enumerate(("netmiko", "ovs", "fake")):
        creds = {k: canary() for k in KEYS}
        body = {
            "name": f"sw{i}",
            "driver": driver,
            "address": f"192.0.2.{i + 1}",
            "device_type": "arista_eos",
            "username": "netops",
            "credentials": creds,
            "settings": {"provisioning_vlan": 10},
        }
        doc = call("POST", "/v1/switches", 201, json=body)
        assert doc["credentials"] == dict.fromkeys(KEYS, REDACTED)
        expected[doc["id"]] = creds
        # Refusals that carry credentials: a duplicate name, bad settings.
        call("POST", "/v1/switches", 409, json={**body, "credentials": {"password": canary()}})
        bad = {"credentials": {"password": canary()}, "settings": {"allowed_vlans": "9-1"}}
        call("PATCH", f"/v1/switches/{doc['id']}", 422, json=bad)
        bad = {**body, "name": f"x{i}", "credentials": {"password": canary(), "token": canary()}}
        call("POST", "/v1/switches", 422, json=bad)
        # A new password; the rest sent back as shown (******) and kept.
        new = canary()
        shown = call("GET", f"/v1/switches/{doc['id']}", 200)["credentials"]
        patch = {"credentials": {**shown, "password": new}, "description": "rotated"}
        call("PATCH", f"/v1/switches/{doc['id']}", 200, json=patch)
        creds["password"] = new
    # Wired node ports, the list, the ports view and the events.
    node = node_body(
        1,
        ports=[
            {
                "address": "52:54:00:00:09:01",
                "local_link_connection": {"switch_id": "sw0", "port_id": "Ethernet1"},
            }
        ],
    )
    call("POST", "/v1/nodes", 201, json=node)
    call("GET", "/v1/switches?limit=1000", 200)
    call("GET", "/v1/switches/sw0/ports", 200)
    call("DELETE", "/v1/switches/sw0", 409)
    call("DELETE", "/v1/switches/sw2", 204)
    call("GET", "/v1/events?limit=1000", 200)

    # The driver side gets them in clear.
    with ctx.session() as s:
        for switch_id, creds in expected.items():
            switch = s.get(Switch, switch_id)
            if switch is not None:
                assert credentials_in_clear(ctx.cipher, switch) == creds

    places = {
        "API responses": b"\n".join(bodies),
        "log records": "\n".join(
            f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
        ).encode(),
        "database": _database_text(ctx),
    }
    assert len(canaries) > 20
    for where, blob in places.items():
        leaked = [v for v in canaries if v.encode() in blob]
        assert not leaked, f"{len(leaked)} canaries found in {where}: {leaked[:5]}"


def test_secrets_seal_and_rotate_cover_switch_credentials(client, ctx) -> None:
    from portal.cli import main

    admin = seed_world(ctx).admin
    r = client.post(
        "/v1/switches",
        json={"name": "old", "driver": "fake", "settings": {"provisioning_vlan": 10}},
        headers=admin,
    )
    legacy = {"password": "swlegacy1", "private_key": "swlegacy2"}
    with ctx.session() as s:  # as if stored in clear by hand or an older version
        s.execute(update(Switch).where(Switch.id == r.json["id"]).values(credentials=legacy))
    runner = CliRunner()
    result = runner.invoke(main, ["secrets", "seal"])
    assert result.exit_code == 0 and result.output == "encrypted 2 secrets stored in clear\n"
    assert b"swlegacy" not in _database_text(ctx)
    assert runner.invoke(main, ["secrets", "seal"]).output.startswith("encrypted 0 ")
    with ctx.session() as s:
        before = s.scalars(select(Switch.credentials)).one()
    assert runner.invoke(main, ["secrets", "rotate"]).output == "re-encrypted 2 secrets\n"
    with ctx.session() as s:
        switch = s.scalars(select(Switch)).one()
        assert switch.credentials != before  # new tokens
        assert credentials_in_clear(ctx.cipher, switch) == legacy
    shown = client.get("/v1/switches/old", headers=admin).json["credentials"]
    assert shown == {"password": REDACTED, "private_key": REDACTED}
