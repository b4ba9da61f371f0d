"""The real deploy path on QEMU machines: IPMI power, netboot (dnsmasq + iPXE), the deploy
agent in the ramdisk, image and config drive written to the virtual disk, boot from disk,
the image's own callback, cleaning, and the failure paths.

One story, on PostgreSQL: the lab (2 VMs behind ipmi_sim BMCs), the portal under gunicorn
on 127.0.0.1 and on the lab's host address, one real ``bms worker``. Needs root and the
lab's programs; skipped without them unless ``BMS_REQUIRE_QEMU=1``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from netboot.lab import machines
from netboot.lab.vmctl import REMOVED
from portal.services.context import Context
from tests.lab.stack import Stack, lab_stack, require_lab, until

pytestmark = [pytest.mark.qemu, pytest.mark.e2e]


@pytest.fixture
def stack(ctx: Context, tmp_path: Path) -> Iterator[Stack]:
    require_lab()
    with lab_stack(ctx, tmp_path, nodes=2) as st:
        yield st


def _fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _disk_is_blank(path: Path) -> bool:
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            if chunk.count(0) != len(chunk):
                return False
    return True


# Once, on the production database: the story takes minutes on emulated machines.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_deploy_boot_callback_clean_redeploy_and_failures(stack: Stack, ctx: Any) -> None:
    st = stack
    node_ids = st.enroll_lab_nodes()
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
    image = st.upload_image("bms-test-image", image_bytes)

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
    cb = until(lambda: [c for c in st.callbacks.seen if c.get("uuid") == first], 240,
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
    until(lambda: [c for c in st.callbacks.seen if c.get("uuid") == second], 240,
           "the second deploy's callback")  # fmt: skip
    st.call("DELETE", f"/v1/instances/{second}", st.tenant)
    st.wait_instance(second, "DELETED")
    st.wait_node(node_id, "available", 400)

    # 4. a corrupted image: the agent's checksum check fails the deploy with a clear fault
    bad = st.upload_image("corrupted", image_bytes)
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
