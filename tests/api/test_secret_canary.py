"""Secret canaries: every secret field of every driver, at any depth, in any value shape,
driven through the whole node API and real jobs, must appear nowhere it should not —
API bodies, events, logs, Redis (job data included) and the database file — while the
driver still gets it in clear.

Each canary is a unique value put under a secret key: for every registered driver's
declared ``secret_fields`` (plus a test driver's own declared field no name rule would
catch, and two keys of the generic rule), at the top level, nested 2 and 3 deep and inside
a list; as a string, a number and a string that looks encrypted (``fernet:…``).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import itertools
import json
import logging
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text

from portal.core.db import Base
from tests.helpers import seed_world
from workers.drivers import registry as drivers
from workers.drivers.base import Driver, DriverError, NodeTask
from workers.drivers.fake import FakeDeploy, FakeInspect, FakeManagement, FakePower

# What the test double got from the workers and the API, per node id.
RECEIVED: dict[str, list[dict[str, Any]]] = {}
DOUBLE_FIELD = "canary_blob"  # declared by the double; no generic rule would catch it
GENERIC = ("bmc_password", "api_token")
SHAPES = ("string", "number", "fernet")
PLACES = ("top", "depth2", "depth3", "list")


class Recording:
    """An interface of the fake driver that records the driver_info it was handed and,
    when ``canary_echo`` is set, fails with an error quoting every value and a URL with
    the password in it (as a careless BMC library would)."""

    ECHO = (("power", "set_power_state"), ("inspect", "validate"))

    def __init__(self, iface: str, inner: Any) -> None:
        self._iface = iface
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            task = next(a for a in args if isinstance(a, NodeTask))
            RECEIVED.setdefault(task.node_id, []).append(copy.deepcopy(task.driver_info))
            if task.driver_info.get("canary_echo") and (self._iface, name) in self.ECHO:
                first = str(task.driver_info.get(DOUBLE_FIELD))
                raise DriverError(
                    f"https://admin:{first}@10.9.9.9/redfish refused; "
                    f"info={json.dumps(task.driver_info)}; repr={task!r}"
                )
            return attr(*args, **kwargs)

        return call


def canary_driver() -> Driver:
    return Driver(
        "canary",
        Recording("power", FakePower()),
        Recording("management", FakeManagement()),
        FakeDeploy(),
        Recording("inspect", FakeInspect()),
        secret_fields=(DOUBLE_FIELD,),
    )


@pytest.fixture
def double():
    drivers.register_driver("canary", canary_driver)
    RECEIVED.clear()
    yield
    drivers.unregister_driver("canary")


class Canaries:
    def __init__(self) -> None:
        self.all: list[str] = []
        self.count = itertools.count(1)

    def value(self, shape: str) -> Any:
        n = next(self.count)
        tag = uuid.uuid4().hex[:10]
        if shape == "number":
            v: Any = 7_300_000_000_000 + int(tag[:8], 16)
            self.all.append(str(v))
            return v
        s = f"cnry{tag}x{n}"
        self.all.append(s)
        return f"fernet:{s}" if shape == "fernet" else s

    def driver_info(self, fields: list[str], shape: str) -> dict[str, Any]:
        info: dict[str, Any] = {"bmc_address": "10.0.0.1", "bmc_username": "admin"}
        # Containers are named so that no rule makes them secret as a whole.
        for i, f in enumerate(fields):
            info[f] = self.value(shape)
            info[f"d2_{i}"] = {"user": "u", f: self.value(shape)}
            info[f"d3_{i}"] = {"outer": {"inner": {f: self.value(shape), "port": 623}}}
            info[f"l_{i}"] = [{"x": 1}, {f: self.value(shape)}]
        return info


def all_fields() -> list[str]:
    fields = sorted(drivers.secret_fields().declared | {DOUBLE_FIELD})
    assert {"ipmi_password", "redfish_password", DOUBLE_FIELD} <= set(fields)
    return fields + list(GENERIC)


def _redis_text(redis: Any) -> bytes:
    """Every key and value in Redis, RQ's zlib-compressed job data decompressed."""
    out = bytearray()

    def add(b: Any) -> None:
        if isinstance(b, bytes):
            out.extend(b)
            with contextlib.suppress(zlib.error):
                out.extend(zlib.decompress(b))
            out.extend(b"\n")

    for key in redis.scan_iter(count=1000):
        add(key)
        kind = redis.type(key)
        if kind == b"string":
            add(redis.get(key))
        elif kind == b"hash":
            for k, v in redis.hgetall(key).items():
                add(k)
                add(v)
        elif kind == b"list":
            for v in redis.lrange(key, 0, -1):
                add(v)
        elif kind == b"set":
            for v in redis.smembers(key):
                add(v)
        elif kind == b"zset":
            for v in redis.zrange(key, 0, -1):
                add(v)
        elif kind == b"stream":
            for _id, entry in redis.xrange(key):
                for k, v in entry.items():
                    add(k)
                    add(v)
    return bytes(out)


def _database_text(ctx: Any) -> bytes:
    url = make_url(ctx.settings.database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        return b"".join(
            p.read_bytes()
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal"))
            if p.exists()
        )
    chunks = []
    with ctx.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(text(f'SELECT t::text FROM "{table.name}" t')).scalars()
            chunks.extend(r.encode() for r in rows)
    return b"\n".join(chunks)


def test_no_secret_leaks_anywhere_and_the_driver_gets_it_in_clear(
    client, ctx, jobs, double, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = seed_world(ctx).admin
    c = Canaries()
    fields = all_fields()
    bodies: list[bytes] = []
    expected: dict[str, dict[str, Any]] = {}  # node id → driver_info the driver must get

    def call(method: str, url: str, want: int, **kw: Any) -> Any:
        r = client.open(url, method=method, headers={**admin, **kw.pop("headers", {})}, **kw)
        bodies.append(r.get_data())
        assert r.status_code == want, (url, r.status_code, r.get_data(as_text=True)[:500])
        return r.json

    # -- enroll: POST per shape, and through a JSON and a CSV import ----------------------
    mac = itertools.count(1)

    def node(name: str, info: dict[str, Any], driver: str = "canary") -> dict[str, Any]:
        return {
            "name": name,
            "driver": driver,
            "resource_class": "baremetal",
            "driver_info": info,
            "properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100, "cpu_arch": "x86_64"},
            "ports": [{"address": f"52:54:00:aa:00:{next(mac):02x}"}],
        }

    for shape in SHAPES:
        info = c.driver_info(fields, shape)
        doc = call("POST", "/v1/nodes", 201, json=node(f"post-{shape}", info))
        expected[doc["uuid"]] = info
        info = c.driver_info(fields, shape)
        rows = call("POST", "/v1/nodes/import", 200, json=[node(f"json-{shape}", info)])
        assert rows["created"] == 1, rows
        expected[rows["results"][0]["uuid"]] = info
    # CSV: one level of driver_info (dotted columns), text values only.
    out = io.StringIO()
    cols = ["name", "driver", "resource_class", "ports"] + [f"driver_info.{f}" for f in fields]
    writer = csv.writer(out)
    writer.writerow(cols)
    csv_infos = []
    for shape in SHAPES:
        info = {f: str(c.value(shape)) for f in fields}
        csv_infos.append(info)
        writer.writerow(
            [f"csv-{shape}", "canary", "baremetal", f"52:54:00:bb:00:{next(mac):02x}"]
            + [info[f] for f in fields]
        )
    rows = call(
        "POST",
        "/v1/nodes/import",
        200,
        data=out.getvalue(),
        headers={"Content-Type": "text/csv"},
    )
    assert rows["created"] == 3, rows
    for result, info in zip(rows["results"], csv_infos, strict=True):
        expected[result["uuid"]] = info
    # The BMC drivers' own nodes: enrolled, shown and validated (no hardware is touched).
    for driver, field in (("ipmi", "ipmi_password"), ("redfish", "redfish_password")):
        for shape in SHAPES:
            info = {
                f"{driver}_address": "10.0.0.2" if driver == "ipmi" else "https://10.0.0.2",
                f"{driver}_username": "admin",
                field: c.value(shape),
                "nested": {field: c.value(shape)},
            }
            doc = call("POST", "/v1/nodes", 201, json=node(f"{driver}-{shape}", info, driver))
            call("GET", f"/v1/nodes/{doc['uuid']}/validate", 200)
    # A node whose "BMC" quotes its credentials in every error.
    echo_info = {**c.driver_info([DOUBLE_FIELD, "ipmi_password"], "string")}
    echo_info["canary_echo"] = True
    echo = call("POST", "/v1/nodes", 201, json=node("echo", {**echo_info}))
    expected[echo["uuid"]] = echo_info

    # -- PATCH: a nested secret replaced, the rest sent back as ****** -------------------
    for uuid_, info in list(expected.items()):
        shown = call("GET", f"/v1/nodes/{uuid_}", 200)["driver_info"]
        new = c.value("fernet")
        key = next(
            (k for k, v in info.items() if k.startswith("d3_") and DOUBLE_FIELD in str(v)), None
        )
        if key:
            shown[key]["outer"]["inner"][DOUBLE_FIELD] = new
            info[key]["outer"]["inner"][DOUBLE_FIELD] = new
        else:
            shown[DOUBLE_FIELD] = new
            info[DOUBLE_FIELD] = new
        ops = [{"op": "replace", "path": "/driver_info", "value": shown}]
        call("PATCH", f"/v1/nodes/{uuid_}", 200, json=ops)
        # A JSON-patch deep into a list, with a number.
        if "l_bmc_password" in info:
            num = c.value("number")
            path = "/driver_info/l_bmc_password/1/bmc_password"
            ops = [{"op": "replace", "path": path, "value": num}]
            call("PATCH", f"/v1/nodes/{uuid_}", 200, json=ops)
            info["l_bmc_password"][1]["bmc_password"] = num

    # -- manage (verify), inspect, power, validate, through real jobs ---------------------
    for uuid_ in expected:
        call("PUT", f"/v1/nodes/{uuid_}/states/provision", 202, json={"target": "manage"})
    jobs()
    for uuid_ in expected:
        assert call("GET", f"/v1/nodes/{uuid_}", 200)["provision_state"] == "manageable"
        call("PUT", f"/v1/nodes/{uuid_}/states/provision", 202, json={"target": "inspect"})
    jobs()
    for uuid_ in expected:
        call("PUT", f"/v1/nodes/{uuid_}/states/power", 202, json={"target": "power on"})
    jobs()
    for uuid_ in expected:
        result = call("GET", f"/v1/nodes/{uuid_}/validate", 200)
        assert result["power"]["result"] is True
    assert call("GET", f"/v1/nodes/{echo['uuid']}/validate", 200)["inspect"]["result"] is False
    shown = call("GET", f"/v1/nodes/{echo['uuid']}", 200)
    assert "power on failed" in shown["last_error"] and "******" in shown["last_error"]
    call("GET", "/v1/nodes?limit=1000", 200)
    call("GET", "/v1/events?limit=1000", 200)
    call("GET", "/v1/ports?limit=1000", 200)

    # -- the driver got every secret in clear, as sent (types kept) ----------------------
    for uuid_, info in expected.items():
        got = RECEIVED.get(uuid_)
        assert got, f"the driver never saw node {uuid_}"
        assert got[-1] == info

    # -- and no canary anywhere else ------------------------------------------------------
    redis = ctx.queue.connection
    places = {
        "API responses": b"\n".join(bodies),
        "log records": "\n".join(
            f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
        ).encode(),
        "Redis": _redis_text(redis),
        "database": _database_text(ctx),
    }
    assert len(c.all) > 150
    # Not vacuous: job data was read (decompressed) and the secrets are in the database.
    assert b"verify_node" in places["Redis"] and b"fernet-json:" in places["database"]
    assert any("set_power" in r.getMessage() for r in caplog.records)  # RQ's job lines
    for where, blob in places.items():
        leaked = [v for v in c.all if v.encode() in blob]
        assert not leaked, f"{len(leaked)} canaries found in {where}: {leaked[:5]}"


def test_clear_text_left_by_older_versions_is_encrypted_by_db_upgrade_and_rotate(
    client, ctx, jobs, double
) -> None:
    """Before this fix numbers, nested passwords and ``fernet:``-looking text were stored
    in clear (and the latter broke the node: no key opened it). ``bms db upgrade`` (and
    ``bms secrets seal``) encrypt them; ``bms secrets rotate`` re-encrypts everything."""
    from click.testing import CliRunner
    from sqlalchemy import update

    from portal.cli import main
    from portal.core.models import Node

    admin = seed_world(ctx).admin
    legacy = {
        DOUBLE_FIELD: "fernet:cnrylegacy1",
        "ipmi_password": 7_300_000_424_242,
        "nest": {"bmc_password": "cnrylegacy2"},
    }
    r = client.post(
        "/v1/nodes",
        json={"name": "old", "driver": "canary", "driver_info": {}, "resource_class": "b"},
        headers=admin,
    )
    node_id = r.json["uuid"]
    with ctx.session() as s:  # as an older version stored it
        s.execute(update(Node).where(Node.id == node_id).values(driver_info=legacy))
    runner = CliRunner()
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "encrypted 3 driver_info secrets stored in clear" in result.output
    for clear in ("cnrylegacy1", "7300000424242", "cnrylegacy2"):
        assert clear.encode() not in _database_text(ctx)
    assert runner.invoke(main, ["secrets", "seal"]).output.startswith("encrypted 0 ")
    assert runner.invoke(main, ["secrets", "rotate"]).output == "re-encrypted 3 secrets\n"
    client.put(f"/v1/nodes/{node_id}/states/provision", json={"target": "manage"}, headers=admin)
    jobs()
    assert RECEIVED[node_id][-1] == legacy  # the fernet-looking text is the literal password
    r = client.get(f"/v1/nodes/{node_id}", headers=admin)
    assert r.json["provision_state"] == "manageable"


def test_a_secret_no_configured_key_opens_is_a_validate_reason_not_a_500(client, ctx) -> None:
    from cryptography.fernet import Fernet
    from sqlalchemy import update

    from portal.core.models import Node
    from portal.core.secrets import Cipher

    admin = seed_world(ctx).admin
    r = client.post(
        "/v1/nodes",
        json={"name": "lost-key", "driver": "fake", "driver_info": {}, "resource_class": "b"},
        headers=admin,
    )
    stranger = Cipher((Fernet.generate_key().decode(),)).encrypt("pw")
    with ctx.session() as s:
        s.execute(
            update(Node)
            .where(Node.id == r.json["uuid"])
            .values(driver_info={"bmc_password": stranger})
        )
    r = client.get(f"/v1/nodes/{r.json['uuid']}/validate", headers=admin)
    assert r.status_code == 200
    assert r.json["power"] == {
        "result": False,
        "reason": "driver_info: secret cannot be decrypted with the configured keys",
    }
