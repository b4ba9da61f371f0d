"""In-band inspection and a deploy on a UEFI (OVMF) machine: the ramdisk's agent reports
the machine (cpus, RAM, disk, boot mode), the flavor asks for ``capabilities:boot_mode: uefi``,
the node netboots the deploy ramdisk through iPXE for UEFI (cleaning, then the deploy),
boots the hybrid test image from its disk (SYSLINUX's EFI build at EFI/BOOT/BOOTX64.EFI)
and calls back; deleting the instance cleans the node back to ``available``.

The node's boot_mode capability also makes the ipmi driver set every boot device with
IPMI's "EFI boot" flag, which ipmi_sim must accept (it does not keep it: see
netboot/lab/README.md). One node, one deploy and delete, on PostgreSQL only (as
test_deploy_e2e.py, which keeps the failure paths on BIOS machines): three netboots and a
disk boot on emulated firmware take two minutes or so. Needs root and the lab's programs
plus OVMF; skipped without them unless ``BMS_REQUIRE_QEMU=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from netboot.lab import machines
from portal.services.context import Context
from tests.lab.stack import Stack, lab_stack, require_lab, ssh_fingerprint, until

pytestmark = [pytest.mark.qemu, pytest.mark.e2e]


@pytest.fixture
def stack(ctx: Context, tmp_path: Path) -> Iterator[Stack]:
    require_lab()
    if not Path(machines.OVMF).is_file():
        problem = f"{machines.OVMF} is missing (apt-get install ovmf)"
        if os.environ.get("BMS_REQUIRE_QEMU", "") not in ("", "0"):
            pytest.fail(f"BMS_REQUIRE_QEMU is set but {problem}", pytrace=False)
        pytest.skip(problem)
    with lab_stack(ctx, tmp_path, nodes=1, boot_mode="uefi") as st:
        yield st


def _public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_uefi_node_deploys_boots_the_image_and_cleans(stack: Stack, ctx: Any) -> None:
    st = stack
    (node_id,) = st.enroll_lab_nodes({"inspect_mode": "agent"}, provide=False)
    assert st.node(node_id)["capabilities"] == {"boot_mode": "uefi"}
    # in-band inspection: the ramdisk netbooted under OVMF reports the machine as it is
    patch = [{"op": "replace", "path": "/properties", "value": {}},
             {"op": "replace", "path": "/capabilities", "value": {}}]  # fmt: skip
    r = st.call("PATCH", f"/v1/nodes/{node_id}", st.admin, json=patch,
                headers={"Content-Type": "application/json-patch+json"})  # fmt: skip
    assert r.status_code == 200, r.text
    st.provision(node_id, "inspect")
    seen = st.wait_node(node_id, "manageable", 300)
    props = seen["properties"]
    assert props["cpus"] == 1 and props["cpu_arch"] == "x86_64", props
    assert 400 <= props["memory_mb"] <= 512 and props["local_gb"] == 0, props  # 512 MiB disk
    assert seen["capabilities"] == {"boot_mode": "uefi"}  # what the ramdisk's firmware was
    assert seen["power_state"] == "power off"
    st.provision(node_id, "provide")
    st.wait_node(node_id, "available", 400)  # cleaning: the ramdisk netbooted under OVMF

    key = _public_key()
    r = st.call("POST", "/v1/keypairs", st.tenant, json={"name": "lab", "public_key": key})
    assert r.status_code == 201, r.text
    r = st.call("POST", "/v1/flavors", st.admin, json={
        "name": "lab.uefi", "vcpus": 1, "ram_mb": 256, "disk_gb": 0, "cpu_arch": "x86_64",
        "resource_class": "baremetal", "is_public": True,
        "extra_specs": {"capabilities:boot_mode": "uefi"},
    })  # fmt: skip
    assert r.status_code == 201, r.text
    image_bytes = st.image_path.read_bytes()  # type: ignore[attr-defined]
    image = st.upload_image("bms-test-image", image_bytes)
    r = st.call("POST", "/v1/instances", st.tenant, json={
        "name": "efi-1", "flavor": r.json()["id"], "image": image, "key_names": ["lab"],
        "metadata": {"bms_callback": st.callbacks.url},
    })  # fmt: skip
    assert r.status_code == 202, r.text
    inst_id = str(r.json()["id"])

    inst = st.wait_instance(inst_id, "ACTIVE")
    cb = until(lambda: [c for c in st.callbacks.seen if c.get("uuid") == inst_id], 240,
               "the deployed image's callback")[0]  # fmt: skip
    assert cb["ssh_fingerprint"] == ssh_fingerprint(key)
    assert cb["ip"] == inst["addresses"][0]["address"] and cb["hostname"] == "efi-1"
    # The last Linux boot (the image's) ran on OVMF and was started by SYSLINUX's EFI build,
    # which passes BOOT_IMAGE= (iPXE passes the deploy kernel's name instead).
    last_boot = st.nodes[0].vm.serial_log.read_text(errors="replace").rsplit("Linux version", 1)[-1]
    assert "efi: EFI v" in last_boot and "BOOT_IMAGE=/vmlinuz" in last_boot, last_boot[:3000]

    assert st.call("DELETE", f"/v1/instances/{inst_id}", st.tenant).status_code in (202, 204)
    st.wait_instance(inst_id, "DELETED")
    st.wait_node(node_id, "available", 400)
