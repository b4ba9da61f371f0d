"""The QEMU lab with a running portal, for the deploy tests and benchmarks/deploy.py."""

from __future__ import annotations

import base64
import contextlib
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

from netboot.lab import lab as labmod
from netboot.lab.enroll import node_body
from netboot.lab.network import LabNetwork
from portal.services import identity, networks
from portal.services.context import Context
from tenants.roles import ADMIN, MEMBER
from tests.helpers import stop_processes

# Its own namespace and subnet per test process: a developer's `bms lab up` (bmslab,
# 10.250.0.0/24) or another test run on the same machine may be up at the same time.
NET = LabNetwork(
    namespace=f"bmse{os.getpid() % 100000}",
    subnet=f"10.249.{os.getpid() % 250}.0/24",
    ipv6_prefix=f"fd00:249:{os.getpid() % 250:x}::/64",
)
# The Debian packages the ramdisk and the test image are built from (shared with tests/netboot).
CACHE = Path(
    os.environ.get("BMS_TEST_DEB_CACHE")
    or Path(__file__).resolve().parents[2] / "var" / "cache" / "debian"
)
# Tenant addresses: the lab subnet, outside dnsmasq's dynamic range (.10-.245).
# Instances' static addresses on the lab segment, as `bms lab up` advises.
PROVIDER = NET.provider_env()


def require_lab() -> None:
    missing = labmod.missing_binaries() + [b for b in ("ipmitool",) if not shutil.which(b)]
    problem = "needs root" if os.geteuid() != 0 else (f"missing {missing}" if missing else "")
    if not problem:
        return
    if os.environ.get("BMS_REQUIRE_QEMU", "") not in ("", "0"):
        pytest.fail(f"BMS_REQUIRE_QEMU is set but the lab {problem}", pytrace=False)
    pytest.skip(f"the QEMU lab {problem}")


def ssh_fingerprint(public_key: str) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a public key line, as the test image reports it."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
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
    # Session ids of the portal's processes (API, worker), for CPU accounting.
    sessions: list[int] = dataclasses.field(default_factory=list)

    def call(self, method: str, path: str, who: dict[str, str], **kw: Any) -> requests.Response:
        headers = {**who, **kw.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kw)

    def node(self, node_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/nodes/{node_id}", self.admin).json())

    def wait_node(
        self, node_id: str, state: str, timeout: float = 300, passing: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """``passing``: failure states the node may go through on its way (a failed
        deploy's node is released and cleaned)."""

        def there() -> dict[str, Any] | None:
            n = self.node(node_id)
            if n["provision_state"] == state and n["reservation"] is None:
                return n
            bad = {"clean failed", "deploy failed", "enroll", "inspect failed"} - {state}
            bad -= set(passing)
            if n["provision_state"] in bad:
                raise AssertionError(
                    f"node {node_id} ended in {n['provision_state']}: "
                    f"{n['last_error']}\n{self.logs()}"
                )
            return None

        return dict(until(there, timeout, f"node {node_id} to be {state}"))

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

        return dict(until(there, timeout, f"instance {inst_id} to be {status}"))

    def provision(self, node_id: str, target: str) -> None:
        r = self.call("PUT", f"/v1/nodes/{node_id}/states/provision", self.admin,
                      json={"target": target})  # fmt: skip
        assert r.status_code == 202, r.text

    def enroll_lab_nodes(
        self, driver_info: dict[str, Any] | None = None, provide: bool = True
    ) -> list[str]:
        """Enroll the lab machines (ipmi), manage and (unless told not to) provide them;
        their node ids. ``driver_info``: added to each node's."""
        ids = []
        for n in self.nodes:
            body = node_body(n.vm, n.bmc_spec)
            body["driver_info"] = {**body["driver_info"], **(driver_info or {})}
            r = self.call("POST", "/v1/nodes", self.admin, json=body)
            assert r.status_code == 201, r.text
            ids.append(r.json()["uuid"])
        for node_id in ids:
            r = self.call("PUT", f"/v1/nodes/{node_id}/states/provision", self.admin,
                        json={"target": "manage"})  # fmt: skip
            assert r.status_code == 202, r.text
        for node_id in ids:
            self.wait_node(node_id, "manageable", 120)
            if provide:
                self.provision(node_id, "provide")
        return ids

    def upload_image(
        self, name: str, data: bytes, declared_sha: str | None = None, disk_format: str = "raw"
    ) -> str:
        r = self.call("POST", "/v1/images", self.tenant, json={
            "name": name, "disk_format": disk_format,
            "sha256": declared_sha or hashlib.sha256(data).hexdigest(),
        })  # fmt: skip
        assert r.status_code == 201, r.text
        image_id = r.json()["id"]
        r = self.call("PUT", f"/v1/images/{image_id}/file", self.tenant, data=data,
                    headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert r.status_code == 200, r.text
        return str(image_id)

    def logs(self) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        for n in self.nodes:
            serial = n.vm.serial_log
            if serial.exists():
                out.append(f"--- {n.vm.name} serial\n{serial.read_text(errors='replace')[-2500:]}")
        return "\n".join(out)


def artefacts(netboot_root: Path) -> Path:
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


def seed(ctx: Context) -> tuple[str, str]:
    settings = dataclasses.replace(
        ctx.settings,
        provider_network_cidr=PROVIDER["BMS_PROVIDER_CIDR"],
        provider_network_pool=PROVIDER["BMS_PROVIDER_POOL"],
        provider_network_gateway=PROVIDER["BMS_PROVIDER_GATEWAY"],
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


def healthy(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=1).ok
    except requests.RequestException:
        return False


@contextlib.contextmanager
def lab_stack(
    ctx: Context,
    tmp_path: Path,
    nodes: int = 2,
    callback_timeout: int = 90,
    boot_mode: str = "bios",
) -> Iterator[Stack]:
    """The lab with ``nodes`` machines (SeaBIOS or OVMF: ``boot_mode``), the portal (gunicorn
    on 127.0.0.1 and the lab's host address) and one ``bms worker``; torn down on exit."""
    var = ctx.settings.var_dir
    image_path = artefacts(var / "netboot")
    admin, alice = seed(ctx)
    # 512 MiB disks: room for the 20 MB test image, and a full wipe that takes seconds.
    cfg = labmod.LabConfig(
        labdir=tmp_path / "lab", dhcp_dir=var / "netboot" / "dhcp", nodes=nodes, net=NET,
        disk_mib=512, boot_mode=boot_mode,
    )  # fmt: skip
    state = labmod.up(cfg)
    procs: list[subprocess.Popen[bytes]] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    try:
        port = free_port()
        env = {
            **os.environ,
            "BMS_PUBLIC_URL": f"http://{NET.host_ip}:{port}",
            "BMS_CALLBACK_TIMEOUT": str(callback_timeout),
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
                env=env, stdout=api_log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
        worker_log = open(log_dir / "worker.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "portal.cli", "worker", "--no-power-sync"],
                env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        until(lambda: healthy(base), 30, "the portal")
        callbacks = Callbacks(NET.host_ip)
        st = Stack(base, {"X-Auth-Token": admin}, {"X-Auth-Token": alice}, state.nodes,
                   callbacks, log_dir)  # fmt: skip
        st.image_path = image_path  # type: ignore[attr-defined]
        st.sessions = [p.pid for p in procs]
        yield st
        callbacks.shutdown()
    finally:
        stop_processes(procs, grace=15)
        labmod.down(cfg.labdir)
