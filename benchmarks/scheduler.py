"""Scheduler benchmark: select + claim at 1,000 and 10,000 nodes, next to OpenStack Placement.

Run from the repository root: ``.venv/bin/python benchmarks/scheduler.py``.

For each size N (``--nodes 1000,10000``), on a fresh PostgreSQL database (``bms_bench_sched``,
Alembic migrations):

1. Loads N free nodes of three classes (``baremetal-small`` / ``-medium`` / ``-large``, one
   third each, sizes differing within a class), a quarter with the ``CUSTOM_GPU`` trait, half
   ``boot_mode: uefi``; in racks of 40 (one aggregate per rack, ``rack`` metadata) and 4
   availability zones. Rows are written with bulk Core INSERTs: this measures scheduling, not
   enrolment.
2. One *decision* is what the build job does to pick a node: one transaction that runs
   ``scheduler.select.candidates`` (filters in SQL, the batch read in index order with
   ``FOR UPDATE SKIP LOCKED``, capability operators re-checked in Python, weighers) and the
   conditional claim ``UPDATE`` on the best node; if the skip-locked batch was empty or
   every claim lost, another round without skipping (as the build job does). The request:
   ``baremetal-medium``, 16 vcpus / 64 GiB / 500 GB, ``capabilities:
   boot_mode: "uefi"``, ``trait:CUSTOM_GPU: forbidden``.
3. With W = 1, 2 and 4 concurrent processes (``--workers``), each making ``--decisions / W``
   decisions (at most N/15 in all: one node in twelve fits the request): median and p99
   latency per decision and claims/s overall; then checks that no node was claimed twice.
   Claims are undone between runs; ``--repeat R`` pools R runs. Also reported: the CPU of
   the deciding process per decision (``time.process_time``, steadier than wall time on a
   busy machine) and its PostgreSQL backend's CPU over the run per decision (``/proc``).
4. Freed node: a claimed node is put in ``cleaning``, then one transaction fires ``done``
   (→ ``available``) as the clean job does; the time until ``candidates`` (asked for that
   node by name) returns it is reported.
5. OpenStack Placement (``benchmarks/peers/placement.py``, its own virtualenv, gunicorn on
   127.0.0.1, noauth2), loaded with the same N nodes as resource providers (custom resource
   class per node class, total 1, the same traits): a decision is ``GET
   /allocation_candidates?resources=CUSTOM_BAREMETAL_MEDIUM:1&required=!CUSTOM_GPU&limit=1``
   plus ``PUT /allocations/{consumer}``. ``--no-placement`` skips it.

Targets (at 10,000 nodes): median <= 5 ms, p99 <= 25 ms, >= 50x Placement's throughput; a
freed node schedulable <= 1 s after cleaning ends.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# This file is named like the ``scheduler`` package: take its own directory off the path
# so ``import scheduler`` finds the package, and import the helpers as ``benchmarks.*``.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks._common import (  # noqa: E402
    cpu_probe,
    log,
    machine_line,
    median,
    percentile,
    recreate_postgres,
    table,
)

DB_NAME = "bms_bench_sched"
PLACEMENT_DB = "placement_bench"
CLASSES = ("baremetal-small", "baremetal-medium", "baremetal-large")
SIZES = {  # cpus, memory_mb, local_gb of the smallest node of a class
    "baremetal-small": (8, 32768, 240),
    "baremetal-medium": (16, 65536, 480),
    "baremetal-large": (64, 524288, 1920),
}
RACK_SIZE = 40
ZONES = 4
REQUEST = {"resource_class": "baremetal-medium", "vcpus": 16, "ram_mb": 65536, "disk_gb": 500}


@dataclass
class Result:
    nodes: int
    workers: int
    latencies_ms: list[float] = field(default_factory=list)
    # CPU of the deciding process per decision (time.process_time), and of its PostgreSQL
    # backend over the whole run divided by the decisions (/proc, clock-tick resolution)
    cpu_ms: list[float] = field(default_factory=list)
    pg_cpu_ms: float = 0.0
    wall_s: float = 0.0
    claims: int = 0
    failures: int = 0
    double_claims: int = 0

    @property
    def rate(self) -> float:
        return self.claims / self.wall_s if self.wall_s else 0.0


def node_rows(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Nodes, rack aggregates and memberships for an N-node cloud."""
    from portal.core.db import utcnow

    now = utcnow()
    nodes, aggregates, members = [], [], []
    for i in range(n):
        rc = CLASSES[i % 3]
        cpus, ram, disk = SIZES[rc]
        grow = 1 + (i // 3) % 4  # four sizes per class
        props = {
            "cpus": cpus * grow,
            "memory_mb": ram * grow,
            "local_gb": disk * grow,
            "cpu_arch": "x86_64",
        }
        nodes.append(
            {
                "id": str(uuid.UUID(int=i + 1)),
                "name": f"sched-{i:05d}",
                "resource_class": rc,
                "driver": "fake",
                "driver_info": {},
                "driver_internal_info": {},
                "properties": props,
                "cpus": props["cpus"],
                "memory_mb": props["memory_mb"],
                "local_gb": props["local_gb"],
                "cpu_arch": "x86_64",
                "capabilities": {"boot_mode": "uefi" if i % 2 else "bios"},
                "traits": ["CUSTOM_GPU"] if i % 4 == 0 else [],
                "provision_state": "available",
                "power_state": "power off",
                "maintenance": False,
                "recent_failures": 1 if i % 3 == 0 else 0,
                "created_at": now,
            }
        )
        if i % RACK_SIZE == 0:
            rack = i // RACK_SIZE
            aggregates.append(
                {
                    "id": str(uuid.UUID(int=10**9 + rack)),
                    "name": f"rack-{rack:04d}",
                    "availability_zone": f"az{rack % ZONES}",
                    "metadata": {"rack": f"r{rack:04d}"},
                    "created_at": now,
                }
            )
        members.append({"aggregate_id": aggregates[-1]["id"], "node_id": nodes[-1]["id"]})
    return nodes, aggregates, members


def load(url: str, n: int) -> float:
    from portal.core.db import Database
    from portal.core.models import Aggregate, AggregateNode, Node

    start = time.perf_counter()
    db = Database(url)
    nodes, aggregates, members = node_rows(n)
    with db.session() as s:
        for model, rows in ((Node, nodes), (Aggregate, aggregates), (AggregateNode, members)):
            for chunk in range(0, len(rows), 2000):
                s.execute(model.__table__.insert(), rows[chunk : chunk + 2000])
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    db.dispose()
    return time.perf_counter() - start


def request_spec(**extra: Any) -> Any:
    from scheduler.request import RequestSpec

    return RequestSpec(
        project_id="bench",
        cpu_arch="x86_64",
        capabilities={"boot_mode": "uefi"},
        forbidden_traits=frozenset({"CUSTOM_GPU"}),
        **REQUEST,
        **extra,
    )


def decide(db: Any, spec: Any, config: Any, holder: str) -> tuple[float, float, str | None]:
    """One select + claim, as the build job does it; (wall ms, CPU ms of this process,
    node id or None)."""
    from scheduler.claim import claim
    from scheduler.select import candidates

    instance_id = str(uuid.uuid4())
    cpu = time.process_time()
    start = time.perf_counter()
    chosen = None
    for round_ in range(5):  # the build job's MAX_SCHEDULE_ROUNDS
        with db.session() as s:
            ranked = candidates(s, spec, config, skip_locked=round_ == 0)
            if not ranked and round_ > 0:
                break
            for node in ranked:
                if claim(s, node.id, instance_id, holder):
                    chosen = node.id
                    break
        if chosen is not None:
            break
    wall = time.perf_counter() - start
    return wall * 1000, (time.process_time() - cpu) * 1000, chosen


def _backend_cpu_s(pid: int) -> float:
    """utime + stime of one PostgreSQL backend (same machine), in seconds."""
    from benchmarks._common import CLOCK_TICKS

    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def worker(url: str, count: int, barrier: Any, out: Any) -> None:
    from portal.core.db import Database
    from scheduler.select import DEFAULT

    db = Database(url)
    spec = request_spec()
    holder = f"bench-{multiprocessing.current_process().pid}"
    for _ in range(3):  # warm the connection and the statement cache, claims undone below
        decide(db, spec, DEFAULT, holder + "-warm")
    with db.engine.connect() as conn:  # the pooled connection every decision reuses
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    barrier.wait()
    pg_before = _backend_cpu_s(backend)
    results = [decide(db, spec, DEFAULT, holder) for _ in range(count)]
    pg_cpu = _backend_cpu_s(backend) - pg_before
    out.put((results, pg_cpu))
    db.dispose()


def undo_claims(url: str) -> None:
    from sqlalchemy import update

    from portal.core.db import Database
    from portal.core.models import Node

    db = Database(url)
    with db.session() as s:
        s.execute(update(Node).values(instance_id=None, reservation=None, reserved_at=None))
    db.dispose()


def run(url: str, n: int, workers: int, decisions: int) -> Result:
    undo_claims(url)
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    per_worker = max(1, decisions // workers)
    procs = [
        ctx.Process(target=worker, args=(url, per_worker, barrier, out)) for _ in range(workers)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    gathered = [out.get() for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    result = Result(n, workers, wall_s=wall)
    chosen = []
    pg_cpu = 0.0
    for rows, backend_cpu in gathered:
        pg_cpu += backend_cpu
        for ms, cpu_ms, node_id in rows:
            result.latencies_ms.append(ms)
            result.cpu_ms.append(cpu_ms)
            if node_id is None:
                result.failures += 1
            else:
                chosen.append(node_id)
    result.pg_cpu_ms = pg_cpu * 1000 / max(1, len(result.latencies_ms))
    result.claims = len(chosen)
    result.double_claims = len(chosen) - len(set(chosen))
    return result


def merged(runs: list[Result]) -> Result:
    """Repeated runs of one size and worker count as one result (claims undone between)."""
    out = Result(runs[0].nodes, runs[0].workers)
    for r in runs:
        out.latencies_ms += r.latencies_ms
        out.cpu_ms += r.cpu_ms
        out.pg_cpu_ms += r.pg_cpu_ms * len(r.latencies_ms)
        out.wall_s += r.wall_s
        out.claims += r.claims
        out.failures += r.failures
        out.double_claims += r.double_claims
    out.pg_cpu_ms /= max(1, len(out.latencies_ms))
    return out


def freed_node_latency(url: str) -> float:
    """Seconds from the commit that ends cleaning to ``candidates`` returning the node."""
    from sqlalchemy import select

    from portal.core import lifecycle
    from portal.core.db import Database
    from portal.core.models import Node
    from scheduler.select import DEFAULT, candidates

    db = Database(url)
    spec = request_spec()
    _, _, node_id = decide(db, spec, DEFAULT, "bench-freed")
    assert node_id is not None
    with db.session() as s:
        node = s.get_one(Node, node_id)
        node.provision_state, node.target_provision_state = "cleaning", "available"
        node.instance_id = node.reservation = None
        name = node.name
    with db.session() as s:
        lifecycle.fire_node(s, s.get_one(Node, node_id), "done", actor="bench")
    committed = time.perf_counter()
    while True:
        with db.session() as s:
            found = [n.id for n in candidates(s, request_spec(node_name=name), DEFAULT)]
        if found == [node_id]:
            break
    latency = time.perf_counter() - committed
    with db.session() as s:
        assert s.scalars(select(Node.provision_state).where(Node.id == node_id)).one() == (
            "available"
        )
    db.dispose()
    return latency


def _concurrent_rate(peer: Any, decisions: int, clients: int = 2) -> float:
    """Placement's decisions/s with ``clients`` concurrent callers (its 2 gunicorn workers)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> bool:
        _, _, chosen = peer.schedule_one(
            "CUSTOM_BAREMETAL_MEDIUM", forbidden_traits=("CUSTOM_GPU",)
        )
        return chosen is not None

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(one, range(decisions)))
    return done / (time.perf_counter() - start)


def placement_class(resource_class: str) -> str:
    return "CUSTOM_" + resource_class.upper().replace("-", "_")


def placement_runs(sizes: list[int], decisions: int) -> dict[int, dict[str, float]]:
    """Placement's decision latency at each size; empty if the peer is unavailable."""
    try:
        from benchmarks.peers.placement import PlacementPeer
    except ImportError as exc:
        log(f"Placement peer not available ({exc}); skipping it")
        return {}
    out: dict[int, dict[str, float]] = {}
    for n in sizes:
        # PostgreSQL, like the portal's side (Placement on SQLite retries locked writes)
        # randomize_allocation_candidates: Placement's setting for concurrent schedulers
        with PlacementPeer(database_url=recreate_postgres(PLACEMENT_DB), randomize=True) as peer:
            log(f"Placement: loading {n} providers")
            nodes, _, _ = node_rows(n)
            peer.load(
                [
                    {
                        "uuid": node["id"],
                        "resource_class": placement_class(node["resource_class"]),
                        "traits": node["traits"],
                    }
                    for node in nodes
                ]
            )
            times = []
            for _ in range(decisions):
                get_ms, put_ms, chosen = peer.schedule_one(
                    "CUSTOM_BAREMETAL_MEDIUM", forbidden_traits=("CUSTOM_GPU",)
                )
                if chosen is not None:
                    times.append(get_ms + put_ms)
            out[n] = {
                "median": median(times),
                "p99": percentile(times, 99),
                "rate": len(times) / (sum(times) / 1000) if times else 0.0,
                "rate2": _concurrent_rate(peer, decisions),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1000,10000")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--decisions", type=int, default=400, help="per run, over all workers")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per size and worker count, pooled"
    )
    parser.add_argument("--placement-decisions", type=int, default=30)
    parser.add_argument("--no-placement", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.nodes.split(",")]
    counts = [int(x) for x in args.workers.split(",")]

    from portal import migrate

    results: list[Result] = []
    freed: dict[int, list[float]] = {}
    for n in sizes:
        url = recreate_postgres(DB_NAME)
        migrate.upgrade(url)
        log(f"{n} nodes loaded in {load(url, n):.1f} s")
        # one node in twelve fits the request: stay inside that, no run should run dry
        decisions = min(args.decisions, n // 15)
        for w in counts:
            log(f"{n} nodes, {w} worker(s), {decisions} decisions x {args.repeat}")
            results.append(merged([run(url, n, w, decisions) for _ in range(args.repeat)]))
        undo_claims(url)
        freed[n] = [freed_node_latency(url) for _ in range(5)]
    placement = {} if args.no_placement else placement_runs(sizes, args.placement_decisions)

    print()
    print(machine_line())
    print(f"CPU probe: {cpu_probe():.1f} ms (lower = faster)")
    rows = []
    for r in results:
        peer = placement.get(r.nodes)
        # like for like: one portal worker against Placement's sequential decisions
        ratio = f"{r.rate / peer['rate']:.0f}x" if peer and peer["rate"] and r.workers == 1 else "-"
        rows.append(
            [
                f"{r.nodes}",
                f"{r.workers}",
                f"{len(r.latencies_ms)}",
                f"{median(r.latencies_ms):.2f}",
                f"{percentile(r.latencies_ms, 99):.2f}",
                f"{median(r.cpu_ms):.2f}",
                f"{sum(r.cpu_ms) / len(r.cpu_ms):.2f}",
                f"{r.pg_cpu_ms:.2f}",
                f"{r.rate:.0f}",
                f"{r.failures}",
                f"{r.double_claims}",
                ratio,
            ]
        )
    print(
        table(
            [
                "nodes",
                "workers",
                "decisions",
                "median ms",
                "p99 ms",
                "cpu ms median",
                "cpu ms mean",
                "pg cpu ms",
                "claims/s",
                "no host",
                "double",
                "vs Placement",
            ],
            rows,
        )
    )
    for n, samples in freed.items():
        ms = sorted(x * 1000 for x in samples)
        print(
            f"freed node schedulable after {median(ms):.1f} ms median, {ms[-1]:.1f} ms max"
            f" of {len(ms)} ({n} nodes; target <= 1 s)"
        )
    for n, peer in placement.items():
        print(
            f"Placement, {n} providers: decision median {peer['median']:.1f} ms, "
            f"p99 {peer['p99']:.1f} ms, {peer['rate']:.1f} decisions/s sequential, "
            f"{peer['rate2']:.1f} decisions/s with 2 concurrent clients"
        )
        ours = max((r.rate for r in results if r.nodes == n), default=0.0)
        best = max(peer["rate"], peer["rate2"])
        if best:
            print(
                f"  best throughput, {n} nodes: portal {ours:.0f}/s vs Placement {best:.1f}/s"
                f" = {ours / best:.0f}x (target >= 50x)"
            )
    big = [r for r in results if r.nodes == max(sizes)]
    for r in big:
        ok = median(r.latencies_ms) <= 5 and percentile(r.latencies_ms, 99) <= 25
        print(
            f"  [{'met' if ok else 'MISSED'}] {r.nodes} nodes, {r.workers} worker(s): "
            f"median {median(r.latencies_ms):.2f} ms (<= 5), "
            f"p99 {percentile(r.latencies_ms, 99):.2f} ms (<= 25)"
        )
    return 0 if all(r.double_claims == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
