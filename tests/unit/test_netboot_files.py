"""Boot artefacts, boot scripts and the config drive, as files: rendered, parsed back."""

from __future__ import annotations

import json
from pathlib import Path

from netboot import artefacts, configdrive, dhcp, tokens
from netboot.render import BootTarget, ipxe_script

TARGET = BootTarget(
    kind="ramdisk",
    kernel_url="http://p/v1/boot/artefacts/deploy.kernel",
    ramdisk_url="http://p/v1/boot/artefacts/deploy.initramfs",
    kernel_params="bms_api=http://p bms_boot=TOKEN",
)


def test_ipxe_scripts() -> None:
    assert ipxe_script(TARGET) == (
        "#!ipxe\nkernel http://p/v1/boot/artefacts/deploy.kernel initrd=initrd bms_api=http://p "
        "bms_boot=TOKEN\ninitrd --name initrd http://p/v1/boot/artefacts/deploy.initramfs\n"
        "boot\n"
    )
    assert ipxe_script(BootTarget(kind="none")) == "#!ipxe\nexit\n"


def test_a_boot_script_is_reachable_only_with_its_operations_token(tmp_path: Path) -> None:
    token = tokens.new_token()
    d = artefacts.prepare(tmp_path, "n1", ["52:54:00:00:00:01"], TARGET, token, "http://p/v1/boot")
    assert artefacts.script_for(tmp_path, token) == ipxe_script(TARGET)
    assert artefacts.script_for(tmp_path, tokens.new_token()) is None
    assert (d / "boot-url").read_text() == f"http://p/v1/boot/{token}.ipxe\n"
    assert token not in "".join(p.name for p in tmp_path.rglob("*"))  # stored hashed only
    dirs = artefacts.dhcp_dirs(tmp_path)
    assert dhcp.boot_url(dirs, "52:54:00:00:00:01") == f"http://p/v1/boot/{token}.ipxe"
    # a new operation replaces the old one: the old token stops working
    second = tokens.new_token()
    artefacts.prepare(tmp_path, "n1", ["52:54:00:00:00:01"], TARGET, second, "http://p/v1/boot")
    assert artefacts.script_for(tmp_path, token) is None
    assert dhcp.boot_url(dirs, "52:54:00:00:00:01") == f"http://p/v1/boot/{second}.ipxe"
    artefacts.clean_up(tmp_path, "n1")
    assert artefacts.script_for(tmp_path, second) is None
    assert dhcp.boot_url(dirs, "52:54:00:00:00:01") is None  # boots from its disk now
    assert not list((tmp_path / "boot").iterdir())


def test_tokens_are_random_and_compared_by_hash() -> None:
    a, b = tokens.new_token(), tokens.new_token()
    assert a != b and len(a) == 43
    assert tokens.matches(a, tokens.digest(a))
    assert not tokens.matches(b, tokens.digest(a))
    assert not tokens.matches(None, tokens.digest(a)) and not tokens.matches(a, None)


def test_config_drive_parses_back_as_configdrive_v2() -> None:
    cd = configdrive.ConfigDrive(
        uuid="8d3c…-uuid",
        hostname="db-1",
        public_keys=["ssh-ed25519 AAAAC3Nz test@host"],
        user_data="#cloud-config\npackages: [htop]\n",
        addresses=[
            configdrive.Address("52:54:00:00:00:01", "10.0.0.5", "10.0.0.0/24", "10.0.0.1", "n")
        ],
        dns=["10.0.0.1"],
    )
    files = configdrive.read(configdrive.build(cd))
    assert files["__volume_id__"] == b"config-2"
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert meta["uuid"] == "8d3c…-uuid" and meta["hostname"] == "db-1"
    assert meta["public_keys"] == {"key-0": "ssh-ed25519 AAAAC3Nz test@host"}
    assert files["openstack/latest/user_data"] == cd.user_data.encode()  # type: ignore[union-attr]
    net = json.loads(files["openstack/latest/network_data.json"])
    assert net["links"] == [
        {"id": "link0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01", "mtu": 1500}
    ]
    assert net["networks"][0] == {
        "id": "network0",
        "type": "ipv4",
        "link": "link0",
        "ip_address": "10.0.0.5",
        "netmask": "255.255.255.0",
        "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}],
        "network_id": "n",
    }
    assert net["services"] == [{"type": "dns", "address": "10.0.0.1"}]
    bare = configdrive.read(configdrive.build(configdrive.ConfigDrive(uuid="u", hostname="h")))
    assert "openstack/latest/user_data" not in bare
