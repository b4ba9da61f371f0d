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
import subprocess
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
def test_deploy_boot_callback_clean_redeploy_and_failures(
    stack: Stack, ctx: Any, tmp_path: Path
) -> None:
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

    def machine_of(node_id: str) -> machines.Machine:
        macs = [p["address"] for p in st.node(node_id)["ports"]]
        return next(n.vm for n in st.nodes if n.vm.mac in macs)

    def maintenance(node_id: str, on: bool) -> None:
        method = "PUT" if on else "DELETE"
        r = st.call(method, f"/v1/nodes/{node_id}/maintenance", st.admin, json={"reason": "pin"})
        assert r.status_code in (200, 202, 204), r.text

    # 0. (in the background) a node whose machine is gone never heartbeats: that deploy
    #    fails on the callback timeout while the story below runs on the other node
    node_id, gone_id = node_ids
    machines.stop(machine_of(gone_id))
    (machine_of(gone_id).dir / REMOVED).touch()
    maintenance(node_id, True)
    lost = boot("web-lost")
    until(lambda: st.node(gone_id)["instance_uuid"] == lost or None, 60, "the claim of web-lost")
    maintenance(node_id, False)

    # 1. deploy: netboot, agent writes image + config drive, reboot from disk, callback
    first = boot("web-1")
    inst = st.wait_instance(first, "ACTIVE")
    cb = until(lambda: [c for c in st.callbacks.seen if c.get("uuid") == first], 240,
                "the deployed image's callback")[0]  # fmt: skip
    assert cb["ssh_fingerprint"] == _fingerprint(key)
    assert cb["ip"] == inst["addresses"][0]["address"]
    assert cb["hostname"] == "web-1"
    assert st.call("GET", f"/v1/instances/{first}", st.admin).json()["node_id"] == node_id
    machine = machine_of(node_id)

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

    # 3. a second deploy on the same node (the other one is busy failing), of the same
    #    image as qcow2: the worker converts it to raw, the agent writes the raw copy
    qcow2 = tmp_path / "test-image.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c",
                    str(st.image_path), str(qcow2)], check=True)  # fmt: skip
    as_qcow2 = st.upload_image("bms-test-image-qcow2", qcow2.read_bytes(), disk_format="qcow2")
    second = boot("web-2", as_qcow2)
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
    # the node is given back: torn down, cleaned through the agent, available again,
    # with the failure kept in last_error; the instance stays in ERROR until deleted
    released = st.wait_node(node_id, "available", 400, passing=("deploy failed",))
    assert "sha256" in (released["last_error"] or ""), released
    st.call("DELETE", f"/v1/instances/{third}", st.tenant)
    st.wait_instance(third, "DELETED")

    # 5. the deploy on the machine that was removed failed on the timeout; its node was
    #    given back in turn, and its cleaning waits for an agent that will not come either
    failed = st.wait_instance(lost, "ERROR", 400)
    assert "no sign of the deploy agent" in failed["fault"]["message"], failed["fault"]
    gone = st.node(gone_id)
    assert "no sign of the deploy agent" in gone["last_error"]
    assert gone["provision_state"] in ("deleting", "cleaning", "clean wait", "clean failed")
