"""``bms lab up|down|status``: the QEMU lab as click commands.

Register in portal/cli.py with ``from netboot.lab.cli import lab`` and
``main.add_command(lab)``; or run standalone: ``python -m netboot.lab.cli up --nodes 2``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from netboot.lab import enroll as enrollment
from netboot.lab import lab as labmod
from netboot.lab.machines import BOOT_MODES
from netboot.lab.network import LabNetwork


def _labdir(value: str | None) -> Path:
    return Path(value).resolve() if value else labmod.default_labdir()


def _network(namespace: str, subnet: str) -> LabNetwork:
    try:
        return LabNetwork(namespace=namespace, subnet=subnet)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def lab() -> None:
    """A QEMU lab: VMs that netboot via iPXE, each with an IPMI BMC on 127.0.0.1."""


_labdir_option = click.option(
    "--lab-dir", default=None, help="State, disks and logs [default: $BMS_VAR_DIR/lab]."
)


@lab.command("up")
@click.option("--nodes", "-n", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--portal", default=None, help="Portal URL to enroll the machines in.")
@click.option("--token", envvar="BMS_ADMIN_TOKEN", default=None, help="Admin token for --portal.")
@click.option("--enroll/--no-enroll", default=True, show_default=True)
@click.option("--resource-class", default=None, help="resource_class of the enrolled nodes.")
@click.option("--namespace", default="bmslab", show_default=True)
@click.option("--subnet", default="10.250.0.0/24", show_default=True)
@click.option("--memory", "memory_mb", default=512, show_default=True, type=click.IntRange(64))
@click.option("--cpus", default=1, show_default=True, type=click.IntRange(1, 8))
@click.option("--disk-mib", default=1024, show_default=True, type=click.IntRange(16))
@click.option("--accel", type=click.Choice(["tcg", "kvm"]), default="tcg", show_default=True)
@click.option(
    "--boot-mode",
    type=click.Choice(list(BOOT_MODES)),
    default="bios",
    show_default=True,
    help="Firmware: SeaBIOS or OVMF (UEFI); enrolled as capability boot_mode.",
)
@click.option(
    "--dhcp-dir",
    default=None,
    help="Per-MAC boot files [default: $BMS_DHCP_DIR or $BMS_VAR_DIR/netboot/dhcp].",
)
@_labdir_option
def up_cmd(
    nodes: int,
    portal: str | None,
    token: str | None,
    enroll: bool,
    resource_class: str | None,
    namespace: str,
    subnet: str,
    memory_mb: int,
    cpus: int,
    disk_mib: int,
    accel: str,
    boot_mode: str,
    dhcp_dir: str | None,
    lab_dir: str | None,
) -> None:
    """Create the network, dnsmasq, N machines (off) and their BMCs; enroll them."""
    if enroll and not (portal and token):
        raise click.UsageError("enrolling needs --portal and --token (or pass --no-enroll)")
    started = time.monotonic()
    try:
        cfg = labmod.LabConfig(
            labdir=_labdir(lab_dir),
            dhcp_dir=Path(dhcp_dir).resolve() if dhcp_dir else labmod.default_dhcp_dir(),
            nodes=nodes,
            net=_network(namespace, subnet),
            cpus=cpus,
            memory_mb=memory_mb,
            disk_mib=disk_mib,
            accel=accel,
            boot_mode=boot_mode,
        )
        state = labmod.up(cfg)
    except (RuntimeError, ValueError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    if enroll and portal and token:
        try:
            for node in state.nodes:
                node.node_id = enrollment.enroll(
                    portal, token, node.vm, node.bmc_spec, resource_class
                )
        except (OSError, enrollment.PortalError) as exc:
            state.save()
            raise click.ClickException(f"enrollment failed (the lab stays up): {exc}") from None
        state.portal = portal
        state.save()
    click.echo(f"lab up in {time.monotonic() - started:.1f}s")
    _print_status(labmod.status(Path(state.labdir)))


@lab.command("down")
@click.option("--namespace", default="bmslab", show_default=True, help="Used without a state file.")
@click.option("--portal", default=None, help="Also delete the enrolled nodes from this portal.")
@click.option("--token", envvar="BMS_ADMIN_TOKEN", default=None)
@click.option("--purge", is_flag=True, help="Also delete the lab directory (disks, logs).")
@_labdir_option
def down_cmd(
    namespace: str, portal: str | None, token: str | None, purge: bool, lab_dir: str | None
) -> None:
    """Stop every VM, BMC and dnsmasq; delete the namespace, taps and veth."""
    labdir = _labdir(lab_dir)
    state = labmod.LabState.load(labdir)
    if portal and token and state is not None:
        for node in state.nodes:
            if node.node_id:
                try:
                    enrollment.unenroll(portal, token, node.node_id)
                    click.echo(f"deleted node {node.vm.name} ({node.node_id})")
                except (OSError, enrollment.PortalError) as exc:
                    click.echo(f"could not delete node {node.vm.name}: {exc}", err=True)
    done = labmod.down(labdir, fallback=_network(namespace, "10.250.0.0/24"), purge=purge)
    for line in done or ["nothing to do"]:
        click.echo(line)


@lab.command("status")
@click.option("--json", "as_json", is_flag=True)
@_labdir_option
def status_cmd(as_json: bool, lab_dir: str | None) -> None:
    """Show the lab: network, dnsmasq, each machine's power, BMC and node."""
    info = labmod.status(_labdir(lab_dir))
    if info is None:
        raise click.ClickException("no lab here (bms lab up)")
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        _print_status(info)


def _print_status(info: dict[str, Any] | None) -> None:
    if info is None:
        return
    ok = "up" if info["namespace_exists"] else "MISSING"
    click.echo(
        f"namespace {info['namespace']} ({ok}), subnet {info['subnet']}, "
        f"dnsmasq {'running' if info['dnsmasq_alive'] else 'NOT running'} on {info['bridge_ip']}, "
        f"{info['boot_mode']} machines"
    )
    click.echo(f"portal reachable from the VMs at http://{info['host_ip']}:<port>")
    env = " ".join(f"{k}={v}" for k, v in info["provider_env"].items())
    click.echo(f"deployed images reach the host if the portal was started with {env}")
    click.echo(f"per-MAC boot files: {info['dhcp_dir']}/{{hosts,opts}}")
    for n in info["nodes"]:
        d = n["driver_info"]
        click.echo(
            f"  {n['name']}  mac {n['mac']}  power {n['power']}  boot {n['boot_device'] or '-'}  "
            f"ipmi {d['ipmi_address']}:{d['ipmi_port']} {d['ipmi_username']}/{d['ipmi_password']}"
            f"{'' if n['bmc_alive'] else ' (BMC DOWN)'}  node {n['node_id'] or '-'}"
        )


if __name__ == "__main__":
    lab()
