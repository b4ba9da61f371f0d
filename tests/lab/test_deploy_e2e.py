"""The real deploy path on QEMU machines: IPMI power, netboot (dnsmasq + iPXE), the deploy
agent in the ramdisk, image and config drive written to the virtual disk, boot from disk,
the image's own callback, cleaning, and the failure paths.

One story, on PostgreSQL: the lab (2 VMs behind ipmi_sim BMCs), the portal under gunicorn
on 127.0.0.1 and on the lab's host address, one real ``bms worker``. Needs root and the
lab's programs; skipped without them unless ``BMS_REQUIRE_QEMU=1``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from netboot.lab import lab as labmod
from netboot.lab import machines
from netboot.lab.enroll import node_body
from netboot.lab.network import LabNetwork
from netboot.lab.vmctl import REMOVED
from portal.services import identity, networks
from portal.services.context import Context
from tenants.roles import ADMIN, MEMBER

pytestmark = [pytest.mark.qemu, pytest.mark.e2e]

NET = LabNetwork()
# The Debian packages the ramdisk and the test image are built from (shared with tests/netboot).
CACHE = Path(
    os.environ.get("BMS_TEST_DEB_CACHE")
    or Path(__file__).resolve().parents[2] / "var" / "cache" / "debian"
)
# Tenant addresses: the lab subnet, outside dnsmasq's dynamic range (.10-.245).
PROVIDER = {"cidr": "10.250.0.0/24", "pool": "10.250.0.246-10.250.0.252", "gw": "10.250.0.1"}


def _require() -> None:
    missing = labmod.missing_binaries() + [b for b in ("ipmitool",) if not shutil.which(b)]
    problem = "needs root" if os.geteuid() != 0 else (f"missing {missing}" if missing else "")
    if not problem:
        return
    if os.environ.get("BMS_REQUIRE_QEMU", "") not in ("", "0"):
        pytest.fail(f"BMS_REQUIRE_QEMU is set but the lab {problem}", pytrace=False)
    pytest.skip(f"the QEMU lab {problem}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Callbacks(http.server.ThreadingHTTPServer):
    """Where the deployed test image reports: {uuid, hostname, ssh_fingerprint, ip}."""

    def __init__(self, host: str) -> None:
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append(json.loads(body or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/callback"


@dataclasses.dataclass
class Stack:
    base: str
    admin: dict[str, str]
    tenant: dict[str, str]
    nodes: list[labmod.NodeState]
    callbacks: Callbacks
    log_dir: Path

    def call(self, method: str, path: str, who: dict[str, str], **kw: Any) -> requests.Response:
        headers = {**who, **kw.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kw)

    def node(self, node_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/nodes/{node_id}", self.admin).json())

    def wait_node(self, node_id: str, state: str, timeout: float = 300) -> dict[str, Any]:
        def there() -> dict[str, Any] | None:
            n = self.node(node_id)
            if n["provision_state"] == state and n["reservation"] is None:
                return n
            bad = {"clean failed", "deploy failed", "enroll", "inspect failed"} - {state}
            if n["provision_state"] in bad:
                raise AssertionError(
                    f"node {node_id} ended in {n['provision_state']}: "
                    f"{n['last_error']}\n{self.logs()}"
                )
            return None

        return dict(_until(there, timeout, f"node {node_id} to be {state}"))

    def instance(self, inst_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/instances/{inst_id}", self.tenant).json())

    def wait_instance(self, inst_id: str, status: str, timeout: float = 400) -> dict[str, Any]:
        def there() -> dict[str, Any] | None:
            i = self.instance(inst_id)
            if i["status"] == status:
                return i
            if i["status"] == "ERROR" and status != "ERROR":
                raise AssertionError(f"instance failed: {i['fault']}\n{self.logs()}")
            return None

        return dict(_until(there, timeout, f"instance {inst_id} to be {status}"))

    def logs(self) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        for n in self.nodes:
            serial = n.vm.serial_log
            if serial.exists():
                out.append(f"--- {n.vm.name} serial\n{serial.read_text(errors='replace')[-2500:]}")
        return "\n".join(out)


def _artefacts(netboot_root: Path) -> Path:
    """The deploy ramdisk and the test image, built from the current sources (~25 s with
    the Debian packages cached)."""
    from netboot.ramdisk.build import build
    from netboot.testimage.build import build_test_image

    built = netboot_root / "built"
    build(built, CACHE)
    image = build_test_image(built / "test-image.raw", CACHE)
    target = netboot_root / "artefacts"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("deploy.kernel", "deploy.initramfs"):
        shutil.copyfile(built / name, target / name)
    return image


def _seed(ctx: Context) -> tuple[str, str]:
    settings = dataclasses.replace(
        ctx.settings,
        provider_network_cidr=PROVIDER["cidr"],
        provider_network_pool=PROVIDER["pool"],
        provider_network_gateway=PROVIDER["gw"],
    )
    lab_ctx = dataclasses.replace(ctx, settings=settings)
    with ctx.session() as s:
        networks.ensure_provider(lab_ctx, s)
        ops = identity.create_project(ctx, s, "ops", None)
        _, admin = identity.create_token(s, identity.create_user(s, "root", ops, ADMIN), None, None)
        pa = identity.create_project(ctx, s, "alpha", None)
        _, alice = identity.create_token(
            s, identity.create_user(s, "alice", pa, MEMBER), None, None
        )
    return admin, alice


@pytest.fixture
def stack(ctx: Context, tmp_path: Path) -> Iterator[Stack]:
    _require()
    var = ctx.settings.var_dir
    image_path = _artefacts(var / "netboot")
    admin, alice = _seed(ctx)
    # 512 MiB disks: room for the 20 MB test image, and a full wipe that takes seconds.
    cfg = labmod.LabConfig(
        labdir=tmp_path / "lab", dhcp_dir=var / "netboot" / "dhcp", nodes=2, net=NET,
        disk_mib=512,
    )  # fmt: skip
    state = labmod.up(cfg)
    procs: list[subprocess.Popen[bytes]] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    try:
        port = _free_port()
        env = {
            **os.environ,
            "BMS_PUBLIC_URL": f"http://{NET.host_ip}:{port}",
            "BMS_CALLBACK_TIMEOUT": "150",
            "BMS_RECONCILE_INTERVAL": "5",
            "BMS_LOCK_STALE_AFTER": "600",
            "BMS_BMC_TIMEOUT": "30",
        }
        api_log = open(log_dir / "api.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                 "--bind", f"{NET.host_ip}:{port}", "--workers", "2", "--threads", "4",
                 "--worker-class", "gthread", "--no-control-socket", "wsgi:app"],
                env=env, stdout=api_log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        worker_log = open(log_dir / "worker.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "portal.cli", "worker", "--no-power-sync"],
                env=env, stdout=worker_log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        _until(lambda: _healthy(base), 30, "the portal")
        callbacks = Callbacks(NET.host_ip)
        st = Stack(base, {"X-Auth-Token": admin}, {"X-Auth-Token": alice}, state.nodes,
                   callbacks, log_dir)  # fmt: skip
        st.image_path = image_path  # type: ignore[attr-defined]
        yield st
        callbacks.shutdown()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        labmod.down(cfg.labdir)


def _healthy(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def _fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _enroll(st: Stack) -> list[str]:
    ids = []
    for n in st.nodes:
        body = node_body(n.vm, n.bmc_spec)
        r = st.call("POST", "/v1/nodes", st.admin, json=body)
        assert r.status_code == 201, r.text
        ids.append(r.json()["uuid"])
    for node_id in ids:
        r = st.call("PUT", f"/v1/nodes/{node_id}/states/provision", st.admin,
                    json={"target": "manage"})  # fmt: skip
        assert r.status_code == 202, r.text
    for node_id in ids:
        st.wait_node(node_id, "manageable", 120)
        st.call("PUT", f"/v1/nodes/{node_id}/states/provision", st.admin,
                json={"target": "provide"})  # fmt: skip
    return ids


def _upload(st: Stack, name: str, data: bytes, declared_sha: str | None = None) -> str:
    r = st.call("POST", "/v1/images", st.tenant, json={
        "name": name, "disk_format": "raw",
        "sha256": declared_sha or hashlib.sha256(data).hexdigest(),
    })  # fmt: skip
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = st.call("PUT", f"/v1/images/{image_id}/file", st.tenant, data=data,
                headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 200, r.text
    return str(image_id)


def _disk_is_blank(path: Path) -> bool:
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            if chunk.count(0) != len(chunk):
                return False
    return True


def test_deploy_boot_callback_clean_redeploy_and_failures(stack: Stack, ctx: Any) -> None:
    st = stack
    node_ids = _enroll(st)
    for node_id in node_ids:  # cleaning through the agent (full wipe), then available
        st.wait_node(node_id, "available", 400)

    key = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    assert st.call("POST", "/v1/keypairs", st.tenant,
                   json={"name": "lab", "public_key": key}).status_code == 201  # fmt: skip
    r = st.call("POST", "/v1/flavors", st.admin, json={
        "name": "lab.vm", "vcpus": 1, "ram_mb": 512, "disk_gb": 0, "cpu_arch": "x86_64",
        "resource_class": "baremetal", "is_public": True,
    })  # fmt: skip
    assert r.status_code == 201, r.text
    flavor = r.json()["id"]
    image_bytes = st.image_path.read_bytes()  # type: ignore[attr-defined]
    image = _upload(st, "bms-test-image", image_bytes)

    def boot(name: str, image_id: str = image) -> str:
        r = st.call("POST", "/v1/instances", st.tenant, json={
            "name": name, "flavor": flavor, "image": image_id, "key_names": ["lab"],
            "metadata": {"bms_callback": st.callbacks.url},
        })  # fmt: skip
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    # 1. deploy: netboot, agent writes image + config drive, reboot from disk, callback
    first = boot("web-1")
    inst = st.wait_instance(first, "ACTIVE")
    cb = _until(lambda: [c for c in st.callbacks.seen if c.get("uuid") == first], 240,
                "the deployed image's callback")[0]  # fmt: skip
    assert cb["ssh_fingerprint"] == _fingerprint(key)
    assert cb["ip"] == inst["addresses"][0]["address"]
    assert cb["hostname"] == "web-1"
    admin_view = st.call("GET", f"/v1/instances/{first}", st.admin).json()
    node_id = admin_view["node_id"]
    machine = next(n.vm for n in st.nodes if n.vm.mac in
                   [p["address"] for p in st.node(node_id)["ports"]])  # fmt: skip

    # 2. delete with the "full" cleaning policy: every byte wiped, available again
    patch = [{"op": "add", "path": "/driver_info/cleaning_mode", "value": "full"}]
    r = st.call("PATCH", f"/v1/nodes/{node_id}", st.admin, json=patch,
                headers={"Content-Type": "application/json-patch+json"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert st.call("DELETE", f"/v1/instances/{first}", st.tenant).status_code in (202, 204)
    st.wait_instance(first, "DELETED")
    st.wait_node(node_id, "available", 400)
    assert _disk_is_blank(machine.disk), "image bytes left on the disk after cleaning"
    patch[0]["op"] = "remove"
    del patch[0]["value"]
    st.call("PATCH", f"/v1/nodes/{node_id}", st.admin, json=patch,
            headers={"Content-Type": "application/json-patch+json"})  # fmt: skip

    # 3. a second deploy on the same node (pinned by taking the other node out)
    other = next(i for i in node_ids if i != node_id)
    st.call("PUT", f"/v1/nodes/{other}/maintenance", st.admin, json={"reason": "pin"})
    second = boot("web-2")
    st.wait_instance(second, "ACTIVE")
    _until(lambda: [c for c in st.callbacks.seen if c.get("uuid") == second], 240,
           "the second deploy's callback")  # fmt: skip
    st.call("DELETE", f"/v1/instances/{second}", st.tenant)
    st.wait_instance(second, "DELETED")
    st.wait_node(node_id, "available", 400)

    # 4. a corrupted image: the agent's checksum check fails the deploy with a clear fault
    bad = _upload(st, "corrupted", image_bytes)
    victim = ctx.settings.image_dir / bad  # the local image store keeps bytes by image id
    with victim.open("r+b") as f:
        f.seek(len(image_bytes) // 2)
        f.write(b"\xffcorrupted\xff")
    third = boot("web-3", bad)
    failed = st.wait_instance(third, "ERROR")
    assert "sha256" in failed["fault"]["message"], failed["fault"]
    assert st.node(node_id)["provision_state"] == "deploy failed"
    st.call("DELETE", f"/v1/instances/{third}", st.tenant)
    st.wait_instance(third, "DELETED")
    st.wait_node(node_id, "available", 400)  # and the node is cleaned

    # 5. a node whose machine is gone never heartbeats: the deploy fails on the timeout
    machines.stop(machine)
    (machine.dir / REMOVED).touch()
    fourth = boot("web-4")
    failed = st.wait_instance(fourth, "ERROR", 400)
    assert "deploy agent" in failed["fault"]["message"] or "no sign" in str(failed["fault"])
    gone = st.node(node_id)
    assert gone["provision_state"] == "deploy failed"
    assert "no sign of the deploy agent" in gone["last_error"]
