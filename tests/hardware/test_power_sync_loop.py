"""The power sync loop as `bms worker` runs it: a real worker process, a real BMC that an
operator switches on with ipmitool, then dies and comes back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from portal.core.models import Node
from tests.hardware.helpers import PASSWORD, act, enroll
from tests.helpers import seed_world

pytestmark = pytest.mark.bmc


def _until(ctx: Any, node_id: str, pred: Callable[[Node], bool], timeout: float) -> Node:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with ctx.session() as s:
            node = s.get_one(Node, node_id)
            if pred(node):
                s.expunge(node)
                return node
        time.sleep(0.2)
    raise AssertionError(f"node {node_id} did not get there within {timeout} s")


def test_bms_worker_runs_the_loop(ctx, client, jobs, ipmi_bmc_factory) -> None:
    admin = seed_world(ctx).admin
    bmc = ipmi_bmc_factory(password=PASSWORD)
    node = enroll(
        client,
        admin,
        "loop-1",
        "ipmi",
        {
            "ipmi_address": "127.0.0.1",
            "ipmi_port": bmc.port,
            "ipmi_username": bmc.username,
            "ipmi_password": bmc.password,
        },
    )
    act(client, admin, node["uuid"], "manage")
    jobs()
    env = {
        **os.environ,
        "BMS_POWER_SYNC_INTERVAL": "1",
        "BMS_POWER_SYNC_TIMEOUT": "3",
        "BMS_POWER_SYNC_MAX_FAILURES": "2",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "worker", "--no-reconcile"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = b""
    try:
        bmc.set_power_out_of_band(True)
        _until(ctx, node["uuid"], lambda n: n.power_state == "power on", 30)
        bmc.stop()
        down = _until(ctx, node["uuid"], lambda n: n.maintenance, 40)
        assert down.fault == "power failure"
        assert down.maintenance_reason.startswith("power sync failed: ")
        assert "no answer" in down.maintenance_reason
        bmc.start()
        up = _until(ctx, node["uuid"], lambda n: not n.maintenance, 40)
        assert up.fault is None and up.power_sync_failures == 0
    except AssertionError as exc:
        worker.terminate()
        out, _ = worker.communicate(timeout=30)
        raise AssertionError(
            f"{exc}; worker output:\n{out.decode(errors='replace')[-3000:]}"
        ) from None
    finally:
        if worker.poll() is None:
            worker.terminate()
            out, _ = worker.communicate(timeout=30)
    assert PASSWORD.encode() not in out  # nothing the worker printed holds the password
