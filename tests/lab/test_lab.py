"""The QEMU lab: per-MAC dnsmasq files (unit) and a real netboot through an IPMI BMC (qemu).

The ``qemu`` test needs root, ip, qemu-system-x86_64 (+ ipxe-qemu), dnsmasq, ipmi_sim and
ipmitool; it is skipped without them unless ``BMS_REQUIRE_QEMU=1``. IPMI calls go through
``ipmitool`` subprocesses (never pyghmi in the test process).
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from netboot import dhcp
from netboot.dhcp import NO_BOOT_TAG, DhcpDirs
from netboot.lab import dnsmasq, machines, network, procs, vmctl
from netboot.lab import lab as labmod
from netboot.lab.bmc import Bmc
from netboot.lab.cli import lab as lab_cli
from netboot.lab.enroll import node_body
from netboot.lab.machines import Machine
from netboot.lab.network import LabNetwork

MAC = "52:54:00:b5:00:00"


# ----------------------------------------------------------------- unit: DHCP files


def test_render_host_and_opts() -> None:
    assert dhcp.render_host("52-54-00-B5-00-00", "bms-node1") == f"{MAC},set:bms-node1\n"
    assert dhcp.render_opts("bms-node1", "http://10.250.0.254:8000/v1/boot/Ab_9-x.ipxe") == (
        "tag:bms-node1,tag:ipxe,option:bootfile-name,http://10.250.0.254:8000/v1/boot/Ab_9-x.ipxe\n"
    )
    assert dhcp.render_host(MAC, NO_BOOT_TAG) == f"{MAC},set:bms-noboot\n"
    assert dhcp.default_tag(MAC) == "bms-525400b50000"
    assert dhcp.file_name(MAC.upper()) == "52-54-00-b5-00-00"


@pytest.mark.parametrize(
    "url",
    ["ftp://x/y", "http://a b/", "http://x/a,b", 'http://x/"', "http://x/ #c", "http://x/\n", ""],
)
def test_render_opts_rejects_urls_dnsmasq_would_misparse(url: str) -> None:
    with pytest.raises(ValueError):
        dhcp.render_opts("bms-n", url)


@pytest.mark.parametrize("tag", ["", "ipxe", "known", NO_BOOT_TAG, "a,b", "a b", "-x", "x" * 64])
def test_unusable_tags(tag: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        dhcp.render_opts(tag, "http://x/y")
    with pytest.raises(ValueError):
        dhcp.set_boot(DhcpDirs.under(tmp_path), MAC, "http://x/y", tag=tag)
    assert not any(tmp_path.iterdir())


def test_bad_mac() -> None:
    with pytest.raises(ValueError):
        dhcp.render_host("52:54:00:b5:00", "bms-x")


def test_set_and_clear_boot_files(tmp_path: Path) -> None:
    dirs = DhcpDirs.under(tmp_path / "dhcp")
    url = "http://10.250.0.254:8000/v1/boot/tok1.ipxe"
    dhcp.set_boot(dirs, MAC, url)
    host, opts = dirs.hosts / "52-54-00-b5-00-00", dirs.opts / "52-54-00-b5-00-00"
    assert host.read_text() == f"{MAC},set:bms-525400b50000\n"
    assert opts.read_text() == f"tag:bms-525400b50000,tag:ipxe,option:bootfile-name,{url}\n"
    # dnsmasq drops privileges: files must be world-readable; no temp files left behind
    assert stat.S_IMODE(host.stat().st_mode) == 0o644 == stat.S_IMODE(opts.stat().st_mode)
    assert sorted(p.name for p in dirs.hosts.iterdir()) == ["52-54-00-b5-00-00"]
    assert dhcp.boot_url(dirs, MAC) == url

    dhcp.set_boot(dirs, MAC, "http://10.250.0.254:8000/v1/boot/tok2.ipxe", tag="node-7")
    assert host.read_text() == f"{MAC},set:node-7\n"
    assert dhcp.boot_url(dirs, MAC) == "http://10.250.0.254:8000/v1/boot/tok2.ipxe"

    dhcp.clear_boot(dirs, MAC)
    assert host.read_text() == f"{MAC},set:{NO_BOOT_TAG}\n"  # rewritten, never deleted
    assert not opts.exists()
    assert dhcp.boot_url(dirs, MAC) is None
    dhcp.clear_boot(dirs, MAC)  # idempotent
    assert dhcp.boot_url(dirs, "52:54:00:b5:00:09") is None


def test_dnsmasq_conf(tmp_path: Path) -> None:
    net = LabNetwork(namespace="bmst", subnet="10.251.3.0/24")
    conf = dnsmasq.render_conf(net, DhcpDirs.under(tmp_path / "d"), tmp_path)
    lines = conf.splitlines()
    for expected in (
        "interface=br0",
        "dhcp-range=10.251.3.10,10.251.3.245,255.255.255.0,1h",
        "enable-ra",
        "dhcp-userclass=set:ipxe,iPXE",
        f"dhcp-hostsdir={tmp_path / 'd' / 'hosts'}",
        f"dhcp-optsdir={tmp_path / 'd' / 'opts'}",
        "dhcp-option=option:router",
        "port=0",
    ):
        assert expected in lines
    assert not any(line.startswith("dhcp-boot") for line in lines)  # unknown MACs: no file
    assert (net.bridge_ip, net.host_ip, net.host_if) == ("10.251.3.1", "10.251.3.254", "bmst-h")
    # instances' static addresses: above the DHCP range, below the host's
    assert net.dhcp_range() == ("10.251.3.10", "10.251.3.245")
    assert net.provider_env() == {
        "BMS_PROVIDER_CIDR": "10.251.3.0/24",
        "BMS_PROVIDER_POOL": "10.251.3.246-10.251.3.253",
        "BMS_PROVIDER_GATEWAY": "10.251.3.1",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"namespace": "x" * 14},
        {"namespace": "Bad"},
        {"subnet": "8.8.8.0/24"},
        {"subnet": "10.0.0.0/30"},
    ],
)
def test_network_validation(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        LabNetwork(**kwargs)


def test_marker_boot_sector_and_qemu_argv(tmp_path: Path) -> None:
    mbr = machines.marker_boot_sector("hello")
    assert len(mbr) == 512 and mbr[-2:] == b"\x55\xaa" and b"hello\r\n\0" in mbr
    vm = Machine(name="n0", mac=MAC, tap="tap0", namespace="bmst", workdir=str(tmp_path))
    argv = machines.qemu_argv(vm, "nc")
    assert argv[:4] == ["ip", "netns", "exec", "bmst"]
    assert "order=nc" in argv and f"e1000,netdev=n0,mac={MAC}" in argv
    assert machines.BOOT_ORDERS["default"] == "cn"  # IPMI "disk" arrives as "default"
    assert machines.mac_for(258) == "52:54:00:b5:01:02"


def test_uefi_qemu_argv_orders_boot_by_bootindex(tmp_path: Path) -> None:
    vm = Machine(name="n0", mac=MAC, tap="tap0", namespace="bmst", workdir=str(tmp_path),
                 boot_mode="uefi")  # fmt: skip
    assert machines.bootindex("nc") == {"n": 1, "c": 2}
    argv = machines.qemu_argv(vm, "nc")
    assert argv[argv.index("-bios") + 1] == machines.OVMF
    assert f"e1000,netdev=n0,mac={MAC},bootindex=1" in argv
    assert "virtio-blk-pci,drive=disk0,bootindex=2" in argv
    assert f"file={vm.disk},format=raw,if=none,id=disk0" in argv
    assert "name=opt/org.tianocore/IPv4Support,string=no" in argv  # no OVMF PXE/HTTP boot
    assert "-boot" not in argv and not any("sercon" in a for a in argv)  # SeaBIOS only
    disk_first = machines.qemu_argv(vm, machines.BOOT_ORDERS["default"])
    assert "virtio-blk-pci,drive=disk0,bootindex=1" in disk_first
    assert f"e1000,netdev=n0,mac={MAC},bootindex=2" in disk_first
    bios = machines.qemu_argv(dataclasses.replace(vm, boot_mode="bios"), "nc")
    assert "-bios" not in bios and "order=nc" in bios
    with pytest.raises(ValueError):
        machines.qemu_argv(dataclasses.replace(vm, boot_mode="csm"), "nc")


def test_boot_mode_is_part_of_the_lab_shape_and_the_enrolled_node(tmp_path: Path) -> None:
    cfg = labmod.LabConfig(labdir=tmp_path, dhcp_dir=tmp_path / "d", boot_mode="uefi")
    old = labmod.LabState(labdir=str(tmp_path), dhcp_dir=str(tmp_path / "d"),
                          network=cfg.net.to_dict(), nodes=[labmod.NodeState({}, {})])  # fmt: skip
    assert old.boot_mode == "bios"  # a state file from before boot modes
    assert not labmod.same_shape(old, cfg)
    assert labmod.same_shape(dataclasses.replace(old, boot_mode="uefi"), cfg)
    vm = labmod._machine(cfg, 0)
    assert vm.boot_mode == "uefi"
    bmc = Bmc(name=vm.name, port=623, username="admin", password="pw", workdir=str(tmp_path),
              machine_json=str(tmp_path / "machine.json"))  # fmt: skip
    assert node_body(vm, bmc)["capabilities"] == {"boot_mode": "uefi"}
    with pytest.raises(ValueError):
        labmod.LabConfig(labdir=tmp_path, dhcp_dir=tmp_path, boot_mode="csm")


def test_vmctl_records_boot_and_reports_power_off(tmp_path: Path) -> None:
    vm = Machine(name="n0", mac=MAC, tap="tap0", namespace="bmst", workdir=str(tmp_path))
    assert vmctl.handle(vm, ["get", "power"]) == "power:0"
    assert vmctl.handle(vm, ["get", "boot"]) == "boot:none"
    vmctl.handle(vm, ["set", "boot", "pxe"])
    assert vmctl.handle(vm, ["get", "boot"]) == "boot:pxe"
    vmctl.handle(vm, ["set", "reset", "1"])  # off: nothing happens
    vmctl.handle(vm, ["set", "power", "0"])
    assert [line.split(" ", 1)[1] for line in (vm.chassis_dir / "calls.log").read_text().splitlines()] == [
        "get power", "get boot", "set boot pxe", "get boot", "set reset 1", "set power 0",
    ]  # fmt: skip


# --------------------------------------------------------------- qemu: a real netboot


def _require_lab() -> None:
    missing = labmod.missing_binaries() + [b for b in ("ipmitool",) if shutil.which(b) is None]
    if (
        not Path("/usr/lib/ipxe/qemu/efi-e1000.rom").exists()
        and not Path("/usr/share/qemu/efi-e1000.rom").exists()
    ):
        missing.append("ipxe-qemu")
    reason = None
    if missing:
        reason = f"missing: {', '.join(missing)}"
    elif os.geteuid() != 0:
        reason = "needs root (network namespaces, taps)"
    if reason:
        if os.environ.get("BMS_REQUIRE_QEMU") == "1":
            pytest.fail(f"BMS_REQUIRE_QEMU=1 but {reason}")
        pytest.skip(reason)


@dataclass
class BootServer:
    """HTTP on the lab's host-side address: serves iPXE scripts, records every request."""

    scripts: dict[str, str]
    hits: list[tuple[float, str]] = field(default_factory=list)
    url: str = ""

    def count(self, path: str) -> int:
        return sum(1 for _, p in self.hits if p == path)


@pytest.fixture
def boot_server_factory() -> Iterator[Callable[[str], BootServer]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def make(host: str) -> BootServer:
        server_state = BootServer(scripts={})

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_state.hits.append((time.monotonic(), self.path))
                body = server_state.scripts.get(self.path)
                self.send_response(200 if body is not None else 404)
                data = (body or "not found\n").encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        server_state.url = f"http://{host}:{httpd.server_address[1]}"
        return server_state

    yield make
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _ipmitool(driver_info: dict[str, Any], *args: str) -> str:
    argv = [
        "ipmitool", "-I", "lanplus", "-C", "3", "-H", driver_info["ipmi_address"],
        "-p", str(driver_info["ipmi_port"]), "-U", driver_info["ipmi_username"],
        "-P", driver_info["ipmi_password"], "-N", "1", "-R", "3", *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


def _wait(probe: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    return procs.poll_until(probe, timeout=timeout, interval=0.05, what=what)


def _serial(vm: Machine) -> str:
    try:
        return vm.serial_log.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@pytest.mark.qemu
def test_lab_netboot_through_ipmi(
    tmp_path: Path, boot_server_factory: Callable[[str], BootServer]
) -> None:
    _require_lab()
    # Own namespace and subnet: a developer's `bms lab up` (bmslab, 10.250.0.0/24) may run too.
    namespace = f"bmst{os.getpid() % 100000}"
    subnet = f"10.251.{os.getpid() % 250}.0/24"
    labdir, dhcp_root = tmp_path / "lab", tmp_path / "dhcp"
    common = ["--lab-dir", str(labdir)]
    runner = CliRunner()
    up_args = ["up", "--no-enroll", "--nodes", "1", "--namespace", namespace, "--subnet", subnet,
               "--dhcp-dir", str(dhcp_root), "--disk-mib", "64", *common]  # fmt: skip
    timings: dict[str, float] = {}
    try:
        t = time.monotonic()
        result = runner.invoke(lab_cli, up_args)
        assert result.exit_code == 0, result.output
        timings["lab up"] = time.monotonic() - t
        state = labmod.LabState.load(labdir)
        assert state is not None and len(state.nodes) == 1
        node = state.nodes[0]
        vm, info = node.vm, node.bmc_spec.driver_info()
        net = state.net
        assert network.namespace_exists(namespace)
        assert network.link_exists(vm.tap, namespace) and network.link_exists(net.host_if)

        # `up` again: the healthy lab is kept as it is (same BMC process)
        result = runner.invoke(lab_cli, up_args)
        assert result.exit_code == 0, result.output
        again = labmod.LabState.load(labdir)
        assert again is not None and again.nodes[0].bmc_pid == node.bmc_pid

        # a second lab on an overlapping subnet fails and leaves nothing behind
        other = ["up", "--no-enroll", "--namespace", f"{namespace}x", "--subnet", subnet,
                 "--dhcp-dir", str(dhcp_root), "--lab-dir", str(tmp_path / "lab2")]  # fmt: skip
        result = runner.invoke(lab_cli, other)
        assert result.exit_code != 0 and "overlaps" in result.output, result.output
        assert not network.namespace_exists(f"{namespace}x")
        assert labmod.LabState.load(tmp_path / "lab2") is None

        server = boot_server_factory(net.host_ip)
        server.scripts = {
            "/boot-1.ipxe": f"#!ipxe\necho BMSLAB-IPXE-MARKER-1\nchain {server.url}/hit-1 || exit\n",
            "/hit-1": "#!ipxe\nexit\n",  # "local boot": falls through to the disk
            "/boot-2.ipxe": "#!ipxe\necho BMSLAB-IPXE-MARKER-2\nexit\n",
        }
        dirs = DhcpDirs.under(dhcp_root)
        dhcp.set_boot(dirs, vm.mac, f"{server.url}/boot-1.ipxe")

        # 1. power on through the BMC: DHCP → per-MAC boot URL → our script → exit → disk
        assert "off" in _ipmitool(info, "chassis", "power", "status")
        t0 = time.monotonic()
        _ipmitool(info, "chassis", "power", "on")
        assert machines.is_running(vm)
        assert "on" in _ipmitool(info, "chassis", "power", "status")
        _wait(lambda: server.count("/hit-1") > 0, "HTTP hit from the VM's iPXE")
        timings["power on -> boot script"] = server.hits[0][0] - t0
        timings["power on -> chained hit"] = time.monotonic() - t0
        assert [p for _, p in server.hits] == ["/boot-1.ipxe", "/hit-1"]
        _wait(lambda: "no OS on disk" in _serial(vm), "iPXE exit falling through to the disk")
        timings["power on -> disk (after exit)"] = time.monotonic() - t0
        assert "BMSLAB-IPXE-MARKER-1" in _serial(vm)

        # 2. the portal rewrites the files (dnsmasq keeps running): a reset gets the new URL
        dnsmasq_pid = state.dnsmasq_pid
        dhcp.set_boot(dirs, vm.mac, f"{server.url}/boot-2.ipxe")
        t1 = time.monotonic()
        _ipmitool(info, "chassis", "power", "reset")
        _wait(lambda: server.count("/boot-2.ipxe") > 0, "new boot URL after reset")
        timings["reset -> new boot script"] = time.monotonic() - t1
        _wait(lambda: _serial(vm).count("no OS on disk") == 2, "disk after second exit")
        assert "BMSLAB-IPXE-MARKER-2" in _serial(vm)

        # 3. withdrawn boot URL: a lease without a file name, iPXE gives up, the disk boots
        hits = len(server.hits)
        dhcp.clear_boot(dirs, vm.mac)
        _ipmitool(info, "chassis", "power", "reset")
        _wait(lambda: _serial(vm).count("no OS on disk") == 3, "disk after a boot without URL")
        assert len(server.hits) == hits
        assert procs.alive(dnsmasq_pid)  # never restarted

        # 4. boot device disk: the reset restarts QEMU with the disk first (no iPXE at all)
        _ipmitool(info, "chassis", "bootdev", "disk")
        assert (vm.chassis_dir / "boot").read_text().strip() == "default"
        _ipmitool(info, "chassis", "power", "reset")
        assert machines.running_order(vm) == "cn"
        _wait(lambda: _serial(vm).count("no OS on disk") == 4, "disk boot with bootdev disk")
        assert len(server.hits) == hits

        # 5. power off through the BMC: QEMU is gone
        qemu_pid = machines.pid(vm)
        _ipmitool(info, "chassis", "power", "off")
        assert not procs.alive(qemu_pid)
        assert "off" in _ipmitool(info, "chassis", "power", "status")

        result = runner.invoke(lab_cli, ["status", "--json", *common])
        assert result.exit_code == 0, result.output
        status = json.loads(result.output)
        assert status["nodes"][0]["power"] == "off" and status["dnsmasq_alive"]
    finally:
        pids = []
        loaded = labmod.LabState.load(labdir)
        if loaded is not None:
            pids = [loaded.dnsmasq_pid] + [n.bmc_pid for n in loaded.nodes]
            pids += [machines.pid(n.vm) for n in loaded.nodes]
        result = runner.invoke(lab_cli, ["down", "--namespace", namespace, *common])
        print("timings:", {k: round(v, 2) for k, v in timings.items()})
    assert result.exit_code == 0, result.output
    assert not network.namespace_exists(namespace)
    assert not network.link_exists(f"{namespace}-h")
    assert not any(procs.alive(p) for p in pids if p)
    assert procs.find(str(labdir)) == []
    assert labmod.LabState.load(labdir) is None
    result = runner.invoke(lab_cli, ["down", "--namespace", namespace, *common])
    assert result.exit_code == 0 and "nothing to do" in result.output
