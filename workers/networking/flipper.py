"""The deploy, tear-down, clean and inspect plans' network steps for one node."""

from __future__ import annotations

from workers.context import WorkerContext
from workers.drivers.base import NodeTask


class SwitchPortFlipper:
    """Moves a node's switch-wired ports between the provisioning network and the tenant's.

    A port with no switch (no ``local_link_connection``) is not managed: it stays on
    whatever the network team wired it to, as with Ironic's ``flat`` network interface.
    """

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    def to_provisioning(self, task: NodeTask) -> None:
        self._flip(task, "provisioning")

    def to_tenant(self, task: NodeTask) -> None:
        self._flip(task, "tenant")

    def _flip(self, task: NodeTask, purpose: str) -> None:
        wired = [p for p in task.ports if p.get("switch_id")]
        if not wired:
            return
        raise NotImplementedError("switch-wired ports arrive with the switch resource")
