"""The portal's side of the deploy agent protocol, with real jobs and a ``fake-agent`` node
(simulated BMC, real agent hand-over). The test plays the agent through the HTTP API; the
real agent in the ramdisk is proven on QEMU machines (tests/lab)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from netboot import configdrive
from portal.core.models import Instance, Node
from tests.helpers import IMAGE_BYTES, node_body, seed_world

MAC = "52:54:00:12:00:01"


@pytest.fixture
def world(ctx):
    return seed_world(ctx)


class Agent:
    """Plays the deploy agent of one node against the test client."""

    def __init__(self, client: Any, ctx: Any, node_id: str) -> None:
        self.client, self.ctx, self.node_id = client, ctx, node_id
        self.token: str | None = None

    def boot_token(self) -> str:
        """What the node's iPXE script passes the ramdisk on its kernel command line."""
        root = self.ctx.settings.var_dir / "netboot"
        url = (root / "nodes" / self.node_id / "boot-url").read_text().strip()
        script = self.client.get(url.replace(self.ctx.settings.public_url, "")).get_data(True)
        assert "deploy.kernel" in script and "deploy.initramfs" in script
        return re.search(r"bms_boot=(\S+)", script).group(1)  # type: ignore[union-attr]

    def lookup(self, boot_token: str | None = None, macs: list[str] | None = None) -> Any:
        body = {"macs": macs or [MAC], "boot_token": boot_token or self.boot_token()}
        r = self.client.post("/v1/agent/lookup", json=body)
        if r.status_code == 200:
            self.token = r.json["token"]
        return r

    def headers(self) -> dict[str, str]:
        return {"X-Agent-Token": self.token or ""}

    def heartbeat(self, **body: Any) -> Any:
        body = {"node_id": self.node_id, "status": "idle", **body}
        return self.client.post("/v1/agent/heartbeat", json=body, headers=self.headers())

    def report(self, command_id: str, ok: bool = True, **body: Any) -> Any:
        return self.client.post(
            f"/v1/agent/commands/{command_id}/result",
            json={"node_id": self.node_id, "ok": ok, **body},
            headers=self.headers(),
        )

    def next_command(self) -> dict[str, Any]:
        r = self.heartbeat()
        assert r.status_code == 200, r.json
        assert r.json["command"] is not None, "a command was expected"
        return dict(r.json["command"])


def in_clean_wait(client: Any, world: Any, jobs: Any) -> str:
    """A fake-agent node, managed and provided: cleaning waits for its agent."""
    r = client.post("/v1/nodes", json=node_body(1, driver="fake-agent"), headers=world.admin)
    node_id = str(r.json["uuid"])
    for target in ("manage", "provide"):
        client.put(
            f"/v1/nodes/{node_id}/states/provision", json={"target": target}, headers=world.admin
        )
        jobs()
    return node_id


def enroll_available(client: Any, world: Any, jobs: Any, ctx: Any) -> tuple[str, Agent]:
    body = node_body(1, driver="fake-agent")
    r = client.post("/v1/nodes", json=body, headers=world.admin)
    assert r.status_code == 201, r.json
    node_id = r.json["uuid"]
    client.put(
        f"/v1/nodes/{node_id}/states/provision", json={"target": "manage"}, headers=world.admin
    )
    jobs()
    client.put(
        f"/v1/nodes/{node_id}/states/provision", json={"target": "provide"}, headers=world.admin
    )
    jobs()
    agent = Agent(client, ctx, node_id)
    assert node_state(ctx, node_id) == "clean wait"
    assert agent.lookup().status_code == 200
    cmd = agent.next_command()
    assert cmd["name"] == "wipe" and cmd["args"] == {"mode": "metadata", "verify": True}
    assert agent.report(cmd["id"], result={"bytes": 2 * 2**20, "verified": True}).status_code == 202
    jobs()
    assert node_state(ctx, node_id) == "available"
    return node_id, agent


def node_state(ctx: Any, node_id: str) -> str:
    with ctx.session() as s:
        return str(s.get_one(Node, node_id).provision_state)


def test_lookup_hands_the_token_out_once_and_only_with_the_boot_token(client, world, jobs, ctx):
    node_id = in_clean_wait(client, world, jobs)
    agent = Agent(client, ctx, node_id)
    assert agent.lookup(macs=["52:54:00:99:99:99"]).status_code == 404  # unknown MAC
    assert agent.lookup(boot_token="not-the-token").status_code == 401
    assert client.post("/v1/agent/lookup", json={"macs": "x"}).status_code == 422
    first = agent.lookup()
    assert first.status_code == 200 and first.json["node_id"] == node_id
    assert first.json["heartbeat_interval"] > 0
    again = agent.lookup()
    assert again.status_code == 409 and "handed out already" in again.json["detail"]
    # the shell agent's format
    r = client.post(
        "/v1/agent/heartbeat?format=env",
        json={"node_id": node_id},
        headers=agent.headers(),
    )
    lines = dict(line.split("=", 1) for line in r.get_data(True).splitlines())
    assert lines["command_name"] == "wipe" and unquote(lines["command_args_mode"]) == "metadata"
    # the stolen-token cases
    saved, agent.token = agent.token, None
    assert agent.heartbeat().status_code == 401
    agent.token = "x" * 43
    assert agent.heartbeat().status_code == 401
    agent.token = saved


def test_cleaning_through_the_agent_then_its_token_is_dead(client, world, jobs, ctx) -> None:
    node_id, agent = enroll_available(client, world, jobs, ctx)
    r = agent.heartbeat()
    assert r.status_code == 403 and "expired" in r.json["detail"]
    # the boot script URL of the finished operation boots from disk now
    assert client.get("/v1/boot/whatever-old-token.ipxe").get_data(True) == "#!ipxe\nexit\n"
    assert not (ctx.settings.var_dir / "netboot" / "nodes" / node_id).exists()


def _boot(client: Any, world: Any, jobs: Any, **extra: Any) -> str:
    r = client.post(
        "/v1/instances",
        json={"name": "web-1", "flavor": world.flavor, "image": world.image, **extra},
        headers=world.alice,
    )
    assert r.status_code == 202, r.json
    jobs()
    return str(r.json["id"])


def test_deploy_writes_the_image_and_config_drive_through_the_agent(client, world, jobs, ctx):
    node_id, _ = enroll_available(client, world, jobs, ctx)
    inst_id = _boot(client, world, jobs, metadata={"bms_callback": "http://10.0.0.1/cb"})
    assert node_state(ctx, node_id) == "wait call-back"
    agent = Agent(client, ctx, node_id)
    assert agent.lookup().status_code == 200
    cmd = agent.next_command()
    assert cmd["name"] == "write_image"
    assert cmd["args"]["sha256"] == hashlib.sha256(IMAGE_BYTES).hexdigest()
    assert cmd["args"]["size"] == len(IMAGE_BYTES)
    assert agent.heartbeat().json["command"] is None  # handed out once
    # the image, with the agent token (no tenant token), and a Range request
    url = cmd["args"]["url"].replace(ctx.settings.public_url, "")
    assert url.endswith(f"?node_id={node_id}")  # the agent fetches it as given
    assert client.get(url).status_code == 401
    got = client.get(url, headers=agent.headers())
    assert got.status_code == 200 and got.data == IMAGE_BYTES
    part = client.get(url, headers={**agent.headers(), "Range": "bytes=16-31"})
    assert part.status_code == 206 and part.data == IMAGE_BYTES[16:32]
    progress = agent.heartbeat(status="busy", progress=40, message="writing")
    assert progress.status_code == 200
    assert agent.report(cmd["id"], result={"sha256": cmd["args"]["sha256"]}).status_code == 202
    jobs()
    assert node_state(ctx, node_id) == "wait call-back"

    cmd = agent.next_command()
    assert cmd["name"] == "write_configdrive"
    url = cmd["args"]["url"].replace(ctx.settings.public_url, "")
    drive = client.get(url, headers=agent.headers())
    files = configdrive.read(drive.data)
    assert files["__volume_id__"] == b"config-2"
    import json

    meta = json.loads(files["openstack/latest/meta_data.json"])
    net = json.loads(files["openstack/latest/network_data.json"])
    with ctx.session() as s:
        inst = s.get_one(Instance, inst_id)
        assert meta["uuid"] == inst.id and meta["hostname"] == "web-1"
        assert meta["meta"] == {"bms_callback": "http://10.0.0.1/cb"}
        assert net["networks"][0]["ip_address"] == inst.addresses[0].address
        assert net["links"][0]["ethernet_mac_address"] == MAC
    agent.report(cmd["id"], result={"partition": "/dev/vda2"})
    jobs()
    assert node_state(ctx, node_id) == "active"
    r = client.get(f"/v1/instances/{inst_id}", headers=world.alice)
    assert r.json["status"] == "ACTIVE"
    assert agent.heartbeat().status_code == 403  # the deploy is over: so is the token


def test_a_bad_checksum_fails_the_deploy_with_the_agents_error(client, world, jobs, ctx) -> None:
    node_id, _ = enroll_available(client, world, jobs, ctx)
    inst_id = _boot(client, world, jobs)
    agent = Agent(client, ctx, node_id)
    agent.lookup()
    cmd = agent.next_command()
    agent.report(cmd["id"], ok=False, error="sha256 mismatch: expected ab12…, got 9f00…")
    jobs()
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        # failed, then given back: torn down and cleaned by the agent of a new operation
        assert node.provision_state == "clean wait" and node.instance_id is None
        assert "sha256 mismatch" in node.last_error
        inst = s.get_one(Instance, inst_id)
        assert inst.status == "ERROR" and "sha256 mismatch" in inst.fault["message"]
    assert agent.heartbeat().status_code == 403  # the deploy's token died with it


def test_instance_metadata_is_strings_only(client, world) -> None:
    r = client.post(
        "/v1/instances",
        json={"name": "x", "flavor": world.flavor, "image": world.image, "metadata": {"a": 1}},
        headers=world.alice,
    )
    assert r.status_code == 422 and "metadata" in r.get_data(True)


def test_results_for_commands_never_handed_out_are_refused(client, world, jobs, ctx) -> None:
    node_id, _ = enroll_available(client, world, jobs, ctx)
    _boot(client, world, jobs)
    agent = Agent(client, ctx, node_id)
    agent.lookup()
    r = agent.report("3b6f0d1e-0000-0000-0000-000000000000")
    assert r.status_code == 404
    assert node_state(ctx, node_id) == "wait call-back"


def test_boot_script_and_artefacts(client, ctx) -> None:
    root: Path = ctx.settings.var_dir / "netboot" / "artefacts"
    root.mkdir(parents=True)
    (root / "deploy.kernel").write_bytes(b"K" * 1000)
    r = client.get("/v1/boot/artefacts/deploy.kernel", headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.data == b"K" * 10
    assert client.get("/v1/boot/artefacts/../secret.key").status_code == 404
    assert client.get("/v1/boot/52-54-00-12-00-01.ipxe").get_data(True) == "#!ipxe\nexit\n"


def test_a_failed_wipe_lands_in_clean_failed_with_the_agents_error(client, world, jobs, ctx):
    node_id = in_clean_wait(client, world, jobs)
    agent = Agent(client, ctx, node_id)
    agent.lookup()
    cmd = agent.next_command()
    agent.report(cmd["id"], ok=False, error="verify failed: 4096 non-zero bytes at 0x1000")
    jobs()
    with ctx.session() as s:
        node = s.get_one(Node, node_id)
        assert node.provision_state == "clean failed" and node.power_state == "power off"
        assert "the agent's wipe failed: verify failed: 4096 non-zero bytes" in node.last_error
    assert agent.heartbeat().status_code == 403
