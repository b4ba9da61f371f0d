"""Enrolling the lab's machines through the portal's HTTP API (stdlib HTTP client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from netboot.lab.bmc import Bmc
from netboot.lab.machines import Machine


class PortalError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _request(
    portal: str, token: str, method: str, path: str, body: Any = None, timeout: float = 30.0
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        portal.rstrip("/") + path,
        data=data,
        method=method,
        headers={
            "X-Auth-Token": token,
            "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {}),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise PortalError(exc.code, exc.read().decode(errors="replace")[:500]) from None
    return json.loads(raw) if raw else None


def node_body(machine: Machine, bmc: Bmc, resource_class: str | None = None) -> dict[str, Any]:
    """``POST /v1/nodes`` body: ipmi driver, properties and boot mode matching the VM, one
    PXE port."""
    body: dict[str, Any] = {
        "name": machine.name,
        "driver": "ipmi",
        "driver_info": bmc.driver_info(),
        "properties": {
            "cpus": machine.cpus,
            "memory_mb": machine.memory_mb,
            "local_gb": machine.local_gb,
            "cpu_arch": "x86_64",
        },
        # What the scheduler matches flavors' ``capabilities:boot_mode`` against, and what
        # tells the ipmi driver to set the boot device with the UEFI flag.
        "capabilities": {"boot_mode": machine.boot_mode},
        "ports": [{"address": machine.mac, "pxe_enabled": True}],
    }
    if resource_class:
        body["resource_class"] = resource_class
    return body


def enroll(
    portal: str, token: str, machine: Machine, bmc: Bmc, resource_class: str | None = None
) -> str:
    """Enroll the machine; its node uuid. A node of that name already there (an earlier
    lab) gets this BMC's driver_info and the machine's boot mode instead."""
    try:
        node = _request(portal, token, "POST", "/v1/nodes", node_body(machine, bmc, resource_class))
    except PortalError as exc:
        if exc.status != 409:
            raise
        patch = [
            {"op": "replace", "path": "/driver_info", "value": bmc.driver_info()},
            {"op": "add", "path": "/capabilities/boot_mode", "value": machine.boot_mode},
        ]
        node = _request(portal, token, "PATCH", f"/v1/nodes/{machine.name}", patch)
    return str(node["uuid"])


def unenroll(portal: str, token: str, node_id: str) -> None:
    """Delete the node (404: already gone)."""
    try:
        _request(portal, token, "DELETE", f"/v1/nodes/{node_id}")
    except PortalError as exc:
        if exc.status != 404:
            raise
