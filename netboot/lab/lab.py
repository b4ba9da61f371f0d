"""Bringing the whole lab up and down: network, dnsmasq, machines and their BMCs.

Everything the lab starts is recorded in ``<labdir>/state.json`` (mode 0600: it holds the
BMC passwords) as soon as it exists, so ``down`` finds it even after a crash; ``down`` also
stops any process whose command line names a path under ``<labdir>`` (every process the lab
starts does). A failed ``up`` tears down what it made.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netboot.dhcp import DhcpDirs
from netboot.lab import bmc as bmcs
from netboot.lab import dnsmasq, machines, network, procs
from netboot.lab.bmc import Bmc
from netboot.lab.machines import Machine
from netboot.lab.network import LabNetwork

REQUIRED_BINARIES = ("ip", machines.QEMU, "ipmi_sim")


def var_dir() -> Path:
    return Path(os.environ.get("BMS_VAR_DIR", "var")).resolve()


def default_labdir() -> Path:
    return var_dir() / "lab"


def default_dhcp_dir() -> Path:
    """Where the portal writes per-MAC boot files: ``$BMS_DHCP_DIR``, else
    ``$BMS_VAR_DIR/netboot/dhcp`` (under the workers' ``netboot_root``)."""
    return Path(os.environ.get("BMS_DHCP_DIR") or var_dir() / "netboot" / "dhcp").resolve()


def missing_binaries() -> list[str]:
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    if dnsmasq.binary() is None:
        missing.append("dnsmasq")
    return missing


@dataclass(frozen=True)
class LabConfig:
    labdir: Path
    dhcp_dir: Path
    nodes: int = 1
    net: LabNetwork = field(default_factory=LabNetwork)
    cpus: int = 1
    memory_mb: int = 512
    disk_mib: int = 1024
    accel: str = "tcg"
    bmc_username: str = "admin"
    boot_mode: str = "bios"

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 64:
            raise ValueError("nodes: 1..64")
        if self.boot_mode not in machines.BOOT_MODES:
            raise ValueError(f"boot_mode: one of {', '.join(machines.BOOT_MODES)}")
        for path in (self.labdir, self.dhcp_dir):
            if any(c.isspace() or c in "\"'" for c in str(path)):
                raise ValueError(f"path must not contain spaces or quotes: {path}")


@dataclass
class NodeState:
    machine: dict[str, Any]
    bmc: dict[str, Any]
    bmc_pid: int | None = None
    node_id: str | None = None

    @property
    def vm(self) -> Machine:
        return Machine(**self.machine)

    @property
    def bmc_spec(self) -> Bmc:
        return Bmc(**self.bmc)


@dataclass
class LabState:
    labdir: str
    dhcp_dir: str
    network: dict[str, str]
    dnsmasq_pid: int | None = None
    nodes: list[NodeState] = field(default_factory=list)
    portal: str | None = None
    boot_mode: str = "bios"  # a state file from before boot modes: SeaBIOS machines

    @property
    def net(self) -> LabNetwork:
        return LabNetwork(**self.network)

    @property
    def path(self) -> Path:
        return Path(self.labdir) / "state.json"

    def save(self) -> None:
        tmp = self.path.with_name(".state.json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.chmod(0o600)
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, labdir: Path) -> LabState | None:
        try:
            raw = json.loads((Path(labdir) / "state.json").read_text())
        except FileNotFoundError:
            return None
        raw["nodes"] = [NodeState(**n) for n in raw.get("nodes", [])]
        return cls(**raw)


def healthy(state: LabState) -> bool:
    """Namespace, dnsmasq and every BMC there (VMs may be off: that is their power state)."""
    conf = str(Path(state.labdir) / "dnsmasq.conf")
    return (
        network.namespace_exists(state.net.namespace)
        and procs.alive(state.dnsmasq_pid, conf)
        and all(procs.alive(n.bmc_pid, str(n.bmc_spec.lan_conf)) for n in state.nodes)
    )


def _machine(cfg: LabConfig, index: int) -> Machine:
    name = f"{cfg.net.namespace}-{index}"
    return Machine(
        name=name,
        mac=machines.mac_for(index),
        tap=f"tap{index}",
        namespace=cfg.net.namespace,
        workdir=str(cfg.labdir / "machines" / name),
        cpus=cfg.cpus,
        memory_mb=cfg.memory_mb,
        disk_mib=cfg.disk_mib,
        accel=cfg.accel,
        qemu=shutil.which(machines.QEMU) or machines.QEMU,
        ip=shutil.which("ip") or "ip",
        boot_mode=cfg.boot_mode,
    )


def same_shape(old: LabState, cfg: LabConfig) -> bool:
    """Whether a recorded lab is what ``cfg`` asks for (else ``up`` rebuilds it)."""
    return (
        old.network == cfg.net.to_dict()
        and len(old.nodes) == cfg.nodes
        and old.boot_mode == cfg.boot_mode
    )


def up(cfg: LabConfig) -> LabState:
    """Bring the lab up; a healthy lab of the same shape is left as it is."""
    missing = missing_binaries()
    if missing:
        raise RuntimeError(f"missing programs: {', '.join(missing)}")
    if cfg.boot_mode == "uefi" and not Path(machines.OVMF).is_file():
        raise RuntimeError(f"UEFI machines need {machines.OVMF} (apt-get install ovmf)")
    labdir = cfg.labdir.resolve()
    labdir.mkdir(parents=True, exist_ok=True)
    old = LabState.load(labdir)
    if old is not None:
        if same_shape(old, cfg) and healthy(old):
            return old
        down(labdir)
    if network.namespace_exists(cfg.net.namespace) or network.link_exists(cfg.net.host_if):
        raise RuntimeError(
            f"namespace {cfg.net.namespace} exists but is not this lab's ({labdir}): "
            f"`bms lab down --namespace {cfg.net.namespace}` or choose another --namespace"
        )
    state = LabState(
        labdir=str(labdir),
        dhcp_dir=str(cfg.dhcp_dir),
        network=cfg.net.to_dict(),
        boot_mode=cfg.boot_mode,
    )
    state.save()
    try:
        network.up(cfg.net)
        state.dnsmasq_pid = dnsmasq.start(cfg.net, DhcpDirs.under(cfg.dhcp_dir), labdir)
        state.save()
        ports: set[int] = set()
        for index in range(cfg.nodes):
            vm = _machine(cfg, index)
            machine_json = vm.save()
            machines.create_disk(vm)
            network.add_tap(cfg.net, vm.tap)
            port = bmcs.free_udp_port(ports)
            ports.add(port)
            spec = Bmc(
                name=vm.name,
                port=port,
                username=cfg.bmc_username,
                password=bmcs.new_password(),
                workdir=str(vm.dir / "bmc"),
                machine_json=str(machine_json),
            )
            node = NodeState(machine=asdict(vm), bmc=spec.to_dict())
            state.nodes.append(node)
            state.save()
            node.bmc_pid = bmcs.start(spec)
            state.save()
    except BaseException:
        down(labdir)
        raise
    return state


def down(labdir: Path, fallback: LabNetwork | None = None, purge: bool = False) -> list[str]:
    """Stop every VM, BMC and dnsmasq of the lab, delete its network; what was done.

    Without a state file, ``fallback`` names the network to delete (default ``bmslab``).
    ``purge`` also deletes ``labdir`` (disks, logs); the DHCP directory is left to the portal.
    """
    labdir = labdir.resolve()
    done: list[str] = []
    state = LabState.load(labdir)
    for node in state.nodes if state else []:
        vm = node.vm
        if machines.is_running(vm):
            done.append(f"stopped VM {vm.name}")
        machines.stop(vm)
        spec = node.bmc_spec
        if procs.alive(node.bmc_pid, str(spec.lan_conf)):
            done.append(f"stopped BMC {spec.name} (udp {spec.port})")
        bmcs.stop(node.bmc_pid, spec)
    if state is not None and procs.alive(state.dnsmasq_pid):
        dnsmasq.stop(state.dnsmasq_pid, labdir / "dnsmasq.conf")
        done.append("stopped dnsmasq")
    for line in procs.kill_all(str(labdir) + "/"):  # anything else the lab started
        done.append(f"killed leftover pid {line}")
    net = state.net if state else (fallback or LabNetwork())
    if network.namespace_exists(net.namespace) or network.link_exists(net.host_if):
        network.down(net)
        done.append(f"deleted namespace {net.namespace} and veth {net.host_if}")
    if state is not None:
        state.path.unlink(missing_ok=True)
    if purge and labdir.exists():
        shutil.rmtree(labdir)
        done.append(f"deleted {labdir}")
    return done


def status(labdir: Path) -> dict[str, Any] | None:
    """The lab as it is now (None: no lab recorded under ``labdir``)."""
    state = LabState.load(labdir.resolve())
    if state is None:
        return None
    net = state.net
    nodes = []
    for node in state.nodes:
        vm, spec = node.vm, node.bmc_spec
        boot = vm.chassis_dir / "boot"
        nodes.append(
            {
                "name": vm.name,
                "mac": vm.mac,
                "tap": vm.tap,
                "power": "on" if machines.is_running(vm) else "off",
                "boot_device": boot.read_text().strip() if boot.exists() else None,
                "bmc_alive": procs.alive(node.bmc_pid, str(spec.lan_conf)),
                "driver_info": spec.driver_info(),
                "node_id": node.node_id,
                "serial_log": str(vm.serial_log),
            }
        )
    return {
        "labdir": state.labdir,
        "namespace": net.namespace,
        "namespace_exists": network.namespace_exists(net.namespace),
        "subnet": net.subnet,
        "host_ip": net.host_ip,
        "bridge_ip": net.bridge_ip,
        "provider_env": net.provider_env(),
        "dhcp_dir": state.dhcp_dir,
        "dnsmasq_alive": procs.alive(state.dnsmasq_pid, str(Path(state.labdir) / "dnsmasq.conf")),
        "portal": state.portal,
        "boot_mode": state.boot_mode,
        "nodes": nodes,
    }
