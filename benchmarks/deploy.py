"""Deploy benchmark on the QEMU lab: create → ACTIVE and delete → available, in phases.

Run from the repository root, as root, with the lab's programs installed (see docs/deploy.md):
``.venv/bin/python benchmarks/deploy.py [--nodes 1,3]``.

For each count N: a fresh PostgreSQL database, the lab with N machines (TCG, 512 MiB disk,
ipmi_sim BMCs), the portal (gunicorn + one ``bms worker``) as tests/lab/stack.py runs it;
the nodes are enrolled and cleaned to ``available``; the tenant uploads the 20 MB test image
and creates N instances at once, then deletes them. Phases per instance come from the
events the portal recorded (and the agent's own write figures):

- ``schedule``: instance created → node ``deploying``;
- ``power on``: → the BMC powered the node on;
- ``netboot+agent``: → the agent's lookup (firmware, iPXE, kernel, initramfs, DHCP);
- ``write``: the image command handed out → its result (MB/s from the agent's bytes/seconds);
- ``config drive``: its command → its result;
- ``reboot``: → instance ACTIVE (boot device disk, reboot through the BMC);
- ``first boot``: ACTIVE → the image's own callback (kernel, config drive, static IP);
- delete: ``clean`` = delete → node ``available`` (netboot, agent, metadata wipe, power off).

Control-plane share: CPU seconds of the portal's processes (API, worker and their children)
over the wall time of boot + delete, next to the machine's CPU (which is mostly QEMU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    BENCH_VAR,
    apply_env,
    bench_env,
    log,
    machine_cpu_seconds,
    machine_line,
    recreate_postgres,
    session_cpu_seconds,
    table,
)


def _events(ctx: Any, ids: list[str]) -> list[Any]:
    from sqlalchemy import select

    from portal.core.models import Event

    with ctx.session() as s:
        rows = s.scalars(select(Event).where(Event.resource_id.in_(ids)).order_by(Event.id)).all()
        s.expunge_all()
        return list(rows)


def _first(events: list[Any], pred: Any) -> float | None:
    for e in events:
        if pred(e):
            return float(e.created_at.timestamp())
    return None


def _phases(ctx: Any, inst_id: str, node_id: str, callback_at: float | None) -> dict[str, float]:
    ev = _events(ctx, [inst_id, node_id])
    start = _first(ev, lambda e: e.type == "instance.created" and e.resource_id == inst_id)
    ev = [e for e in ev if start is None or e.created_at.timestamp() >= start]  # this deploy

    def at(type_: str, **payload: Any) -> float | None:
        return _first(
            ev,
            lambda e: e.type == type_ and all(e.payload.get(k) == v for k, v in payload.items()),
        )

    created = at("instance.created") or at("instance.status", status="BUILD")
    points = {
        "created": created,
        "deploying": at("node.provision_state", state="deploying"),
        "power on": at("node.power_state", state="power on"),
        "agent": at("node.agent_lookup"),
        "write sent": at("node.agent_command", command="write_image"),
        "write done": at("node.agent_result", command="write_image"),
        "cd sent": at("node.agent_command", command="write_configdrive"),
        "cd done": at("node.agent_result", command="write_configdrive"),
        "active": at("instance.status", status="ACTIVE"),
    }
    out: dict[str, float] = {}
    steps = [
        ("schedule", "created", "deploying"),
        ("power on", "deploying", "power on"),
        ("netboot+agent", "power on", "agent"),
        ("write", "write sent", "write done"),
        ("config drive", "cd sent", "cd done"),
        ("off+flip+on", "cd done", "active"),
    ]
    for name, a, b in steps:
        if points[a] is not None and points[b] is not None:
            out[name] = points[b] - points[a]  # type: ignore[operator]
    if callback_at is not None and points["active"] is not None:
        out["first boot"] = callback_at - points["active"]
    if created is not None and points["active"] is not None:
        out["create→ACTIVE"] = points["active"] - created
    return out


def run(count: int) -> dict[str, Any]:
    var = BENCH_VAR / f"deploy-{count}"
    db_url = recreate_postgres("bms_bench_deploy")
    env = bench_env(db_url, var)
    apply_env(env)
    from portal import migrate
    from portal.core.config import Settings
    from portal.core.models import Node
    from portal.services.context import Context
    from tests.lab.stack import lab_stack
    from workers import context as worker_context

    migrate.upgrade(db_url)
    worker_context.current.cache_clear()
    ctx = Context.build(Settings.from_env())
    with (
        tempfile.TemporaryDirectory(prefix="bms-bench-deploy-") as tmp,
        lab_stack(ctx, Path(tmp), nodes=count, callback_timeout=600) as st,
    ):
        t0 = time.monotonic()
        node_ids = st.enroll_lab_nodes()
        for n in node_ids:
            st.wait_node(n, "available", 900)
        onboard = time.monotonic() - t0
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
        st.call("POST", "/v1/keypairs", st.tenant, json={"name": "b", "public_key": key})
        flavor = st.call("POST", "/v1/flavors", st.admin, json={
            "name": "lab.vm", "vcpus": 1, "ram_mb": 512, "disk_gb": 0, "cpu_arch": "x86_64",
            "resource_class": "baremetal"}).json()["id"]  # fmt: skip
        image_bytes = st.image_path.read_bytes()  # type: ignore[attr-defined]
        image = st.upload_image("bench", image_bytes)

        cpu0, machine0, wall0 = session_cpu_seconds(set(st.sessions)), machine_cpu_seconds(), \
            time.monotonic()  # fmt: skip
        insts = []
        for i in range(count):
            r = st.call("POST", "/v1/instances", st.tenant, json={
                "name": f"b-{i}", "flavor": flavor, "image": image, "key_names": ["b"],
                "metadata": {"bms_callback": st.callbacks.url}})  # fmt: skip
            insts.append(r.json()["id"])
        results: dict[str, dict[str, Any]] = {}

        def wait_one(inst_id: str) -> None:
            st.wait_instance(inst_id, "ACTIVE", 1200)
            cb_seen = None
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and cb_seen is None:
                if any(c.get("uuid") == inst_id for c in st.callbacks.seen):
                    cb_seen = time.time()
                time.sleep(0.2)
            results[inst_id] = {"callback_at": cb_seen}

        threads = [threading.Thread(target=wait_one, args=(i,)) for i in insts]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        boot_wall = time.monotonic() - wall0
        phases = []
        for inst_id in insts:
            node_id = st.call("GET", f"/v1/instances/{inst_id}", st.admin).json()["node_id"]
            ph = _phases(ctx, inst_id, node_id, results[inst_id]["callback_at"])
            with ctx.session() as s:
                res = (
                    (s.get_one(Node, node_id).driver_internal_info or {})
                    .get("agent_results", {})
                    .get("write_image", {})
                )
            if res.get("seconds"):
                ph["MB/s"] = float(res["bytes"]) / 2**20 / float(res["seconds"])
            phases.append((node_id, ph))
        t1 = time.monotonic()
        for inst_id in insts:
            st.call("DELETE", f"/v1/instances/{inst_id}", st.tenant)
        for node_id, _ in phases:
            st.wait_node(node_id, "available", 900)
        delete_wall = time.monotonic() - t1
        cpu = session_cpu_seconds(set(st.sessions)) - cpu0
        machine = machine_cpu_seconds() - machine0
        wall = time.monotonic() - wall0
    return {
        "count": count,
        "onboard": onboard,
        "boot_wall": boot_wall,
        "delete_wall": delete_wall,
        "phases": [p for _, p in phases],
        "cpu": cpu,
        "machine": machine,
        "wall": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="1,3", help="parallel node counts, comma-separated")
    args = ap.parse_args()
    log(machine_line())
    runs = [run(int(n)) for n in args.nodes.split(",")]
    names = ["schedule", "power on", "netboot+agent", "write", "config drive", "off+flip+on",
             "first boot", "create→ACTIVE", "MB/s"]  # fmt: skip
    rows = []
    for r in runs:
        row = [str(r["count"])]
        for name in names:
            vals = [p[name] for p in r["phases"] if name in p]
            row.append(f"{statistics.median(vals):.1f}" if vals else "-")
        row += [f"{r['delete_wall']:.1f}", f"{r['cpu']:.1f}", f"{100 * r['cpu'] / r['wall']:.1f}%"]
        rows.append(row)
    print()
    print(table(["nodes", *names, "delete→available", "portal CPU s", "portal share"], rows))
    for r in runs:
        print(
            f"{r['count']} node(s): onboarding (enroll+manage+clean) {r['onboard']:.0f} s; boot "
            f"wall {r['boot_wall']:.0f} s; machine CPU {r['machine']:.0f} s (mostly QEMU); "
            f"portal CPU {r['cpu']:.1f} s over {r['wall']:.0f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
