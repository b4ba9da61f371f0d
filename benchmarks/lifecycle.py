"""Lifecycle benchmark: boot N instances on fake nodes and delete them, with real RQ workers.

Run from the repository root: ``.venv/bin/python benchmarks/lifecycle.py [--nodes N]``.

For each backend (PostgreSQL by default; ``--sqlite`` adds SQLite) and each worker count
(``--workers 1,2``), on a fresh database:

1. seeds through ``portal.services``: the provider network, a tenant project whose quota
   fits N instances, an admin and a member token, a flavor and an uploaded image;
2. starts W real worker processes, ``python -m portal.cli worker --no-reconcile`` (the
   ``bms worker`` command, which runs jobs in the worker process), each in its own process
   group, with the benchmark's environment (database, Redis, queue); with
   ``--worker-kind bms-fork``, ``bms worker --mode fork`` (RQ's work horse per job) instead,
   for comparison;
3. onboarding (timed, but not the lifecycle): enrolls N ``fake`` nodes with zero fake
   delays through ``portal.services.nodes`` (create + ``manage``), waits until all are
   ``manageable``, ``provide``s them and waits until all are ``available``;
4. boot: N ``POST /v1/instances`` as the tenant through the Flask test client (the real
   app, in this process, no HTTP server), then waits until all instances are ACTIVE;
5. delete: N ``DELETE /v1/instances/<id>``, then waits until every instance is DELETED and
   every node ``available`` again (tear-down and cleaning done).

A lifecycle is one boot (4) plus one delete (5) of one node. Reported per run: wall
seconds per phase, lifecycles/s = N / (boot + delete wall), and, per node over boot + delete:

- ``cpu``: CPU seconds of the worker process groups (each worker, its scheduler and every
  reaped work horse: utime+stime+cutime+cstime from /proc) plus the CPU the API requests
  took in this process (``time.thread_time`` around each request), divided by N: the
  control-plane figure compared with the target (<= 50 ms);
- ``cpu+pg``: the same plus the PostgreSQL server's CPU (all its processes, all databases);
- ``occupancy``: wall seconds x workers / N (how long a lifecycle holds a worker);
- ``machine``: busy CPU seconds of the whole machine (/proc/stat: workers, API, PostgreSQL,
  Redis, and anything else running), divided by N.

``other work`` is the share of the machine that other processes used meanwhile: a run
with a high share was disturbed (this machine is shared) and should be repeated. The
queue's jobs, results and registries are deleted from Redis at the end of each run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    BENCH_VAR,
    REPO_ROOT,
    CpuUse,
    apply_env,
    bench_env,
    child_env,
    cpu_probe,
    cpu_sample,
    cpu_used,
    drop_postgres,
    log,
    machine_line,
    purge_rq_queue,
    recreate_postgres,
    stop_group,
    table,
    wait_quiet,
)

DB_NAME = "bms_bench_lifecycle"
IMAGE_BYTES = b"\x00bms benchmark image\n" * 1000
POLL = 0.05


@dataclass
class Phase:
    cpu: CpuUse = field(default_factory=CpuUse)  # wall, machine, own, workers, postgres
    api_cpu: float = 0.0  # thread CPU inside the API requests (part of cpu.own)

    @property
    def wall(self) -> float:
        return self.cpu.wall

    @property
    def worker_cpu(self) -> float:
        return self.cpu.sessions


@dataclass
class Run:
    backend: str
    workers: int
    nodes: int
    kind: str
    phases: dict[str, Phase] = field(default_factory=dict)
    busy: float = 0.0
    probe: float = 0.0

    def lifecycle(self) -> Phase:
        boot, delete = self.phases["boot"], self.phases["delete"]
        return Phase(cpu=boot.cpu + delete.cpu, api_cpu=boot.api_cpu + delete.api_cpu)


@dataclass
class World:
    admin: dict[str, str]
    tenant: dict[str, str]
    flavor: str
    image: str


def seed(ctx: Any, n: int) -> World:
    from portal.services import flavors, identity, images, networks
    from tenants.roles import ADMIN, MEMBER

    with ctx.session() as s:
        networks.ensure_provider(ctx, s)
        ops = identity.create_project(ctx, s, "ops", None)
        _, admin = identity.create_token(
            s, identity.create_user(s, "bench-admin", ops, ADMIN), None, None
        )
        tenant = identity.create_project(ctx, s, "tenant", None)
        _, member = identity.create_token(
            s, identity.create_user(s, "bench-member", tenant, MEMBER), None, None
        )
        identity.set_quota(
            ctx,
            s,
            tenant.id,
            {"instances": n, "vcpus": 4 * n, "ram_mb": 8192 * n},
            identity.SYSTEM,
        )
        flavor = flavors.create(
            s,
            {
                "name": "bm.small",
                "vcpus": 4,
                "ram_mb": 8192,
                "disk_gb": 50,
                "cpu_arch": "x86_64",
                "resource_class": "baremetal",
                "extra_specs": {},
            },
            identity.SYSTEM,
        )
        image = images.create(
            s,
            {
                "name": "bench-image",
                "visibility": "public",
                "expected_sha256": hashlib.sha256(IMAGE_BYTES).hexdigest(),
            },
            identity.SYSTEM,
        )
        world = World({"X-Auth-Token": admin}, {"X-Auth-Token": member}, flavor.id, image.id)
    # The upload runs its own transactions (no transaction is held while bytes flow).
    images.upload(ctx, world.image, io.BytesIO(IMAGE_BYTES), identity.SYSTEM)
    return world


def node_body(i: int) -> dict[str, Any]:
    """A fake node: every driver step succeeds at once (no ``fake_delay``)."""
    return {
        "name": f"bench-{i:05d}",
        "driver": "fake",
        "resource_class": "baremetal",
        "driver_info": {
            "bmc_address": f"10.1.{i // 256 % 256}.{i % 256}",
            "bmc_username": "admin",
            "bmc_password": "s3cret-pw",
        },
        "properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100, "cpu_arch": "x86_64"},
        "ports": [{"address": f"52:54:30:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"}],
    }


class Workers:
    """W ``bms worker --no-reconcile`` processes, each the leader of its own session."""

    def __init__(self, env: dict[str, str], count: int, log_dir: Path, kind: str) -> None:
        self.env, self.count, self.log_dir, self.kind = env, count, log_dir, kind
        self.procs: list[subprocess.Popen[bytes]] = []

    def argv(self, i: int) -> list[str]:
        mode = "fork" if self.kind == "bms-fork" else "inline"
        return [sys.executable, "-m", "portal.cli", "worker", "--no-reconcile", "--mode", mode]

    def __enter__(self) -> Workers:
        for i in range(self.count):
            with (self.log_dir / f"worker-{i}.log").open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        self.argv(i),
                        cwd=REPO_ROOT,
                        env=child_env(self.env),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        return self

    def __exit__(self, *_: object) -> None:
        for proc in self.procs:
            stop_group(proc)

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker {proc.pid} exited with {proc.returncode}; see {self.log_dir}"
                )

    @property
    def sessions(self) -> set[int]:
        """Each worker leads its own session: worker, scheduler and work horses."""
        return {p.pid for p in self.procs}


def wait_until(
    ctx: Any, workers: Workers, what: str, done: Any, failed: Any, timeout: float
) -> None:
    """Poll the database until ``done(session)``; stop early on ``failed(session)``."""
    deadline = time.monotonic() + timeout
    while True:
        with ctx.session() as s:
            if done(s):
                return
            bad = failed(s)
        if bad:
            raise RuntimeError(f"while waiting for {what}: {bad}")
        workers.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)


def count_nodes(s: Any, state: str) -> int:
    from sqlalchemy import func, select

    from portal.core.models import Node

    return int(s.scalar(select(func.count()).where(Node.provision_state == state)) or 0)


def failed_nodes(s: Any) -> str | None:
    from sqlalchemy import select

    from portal.core.models import Node

    bad = s.execute(
        select(Node.name, Node.provision_state, Node.last_error).where(
            Node.provision_state.in_(("enroll", "clean failed", "deploy failed")),
            Node.last_error.is_not(None),
        )
    ).first()
    return f"node {bad[0]} is '{bad[1]}': {bad[2]}" if bad else None


def count_instances(s: Any, status: str) -> int:
    from sqlalchemy import func, select

    from portal.core.models import Instance

    return int(s.scalar(select(func.count()).where(Instance.status == status)) or 0)


def failed_instances(s: Any) -> str | None:
    from sqlalchemy import select

    from portal.core.models import Instance

    bad = s.execute(select(Instance.name, Instance.fault).where(Instance.status == "ERROR")).first()
    return f"instance {bad[0]} is ERROR: {bad[1]}" if bad else failed_nodes(s)


def timed(workers: Workers, body: Any) -> tuple[Phase, Any]:
    phase = Phase()
    start = cpu_sample(workers.sessions)
    result, phase.api_cpu = body()
    phase.cpu = cpu_used(start, workers.sessions)
    return phase, result


def one_run(backend: str, worker_count: int, n: int, kind: str, quiet_wait: float) -> Run:
    var_dir = BENCH_VAR / f"lifecycle-{backend}-{worker_count}w"
    if backend == "postgresql":
        url = recreate_postgres(DB_NAME)
    else:
        db_file = var_dir / "bms.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db_file}"
    env = bench_env(url, var_dir)
    apply_env(env)

    from portal import migrate
    from portal.app import create_app
    from portal.core.config import Settings
    from portal.core.models import Node
    from portal.services import identity, nodes
    from portal.services.context import Context

    migrate.upgrade(url)
    ctx = Context.build(Settings.from_env())
    world = seed(ctx, n)
    app = create_app(context=ctx)
    client = app.test_client()
    run = Run(backend, worker_count, n, kind)
    timeout = 60 + 5 * n
    run.busy = wait_quiet(quiet_wait)
    run.probe = cpu_probe()
    log(f"{backend}, {worker_count} {kind} worker(s), {n} nodes")
    try:
        with Workers(env, worker_count, var_dir, kind) as workers:

            def onboard() -> tuple[None, float]:
                with ctx.session() as s:
                    for i in range(n):
                        node = nodes.create_node(ctx, s, node_body(i), identity.SYSTEM)
                        nodes.provision(ctx, s, node, "manage", identity.SYSTEM)
                wait_until(
                    ctx,
                    workers,
                    "manageable",
                    lambda s: count_nodes(s, "manageable") == n,
                    failed_nodes,
                    timeout,
                )
                with ctx.session() as s:
                    for node in s.query(Node).all():
                        nodes.provision(ctx, s, node, "provide", identity.SYSTEM)
                wait_until(
                    ctx,
                    workers,
                    "available",
                    lambda s: count_nodes(s, "available") == n,
                    failed_nodes,
                    timeout,
                )
                return None, 0.0

            def boot() -> tuple[list[str], float]:
                ids, cpu = [], 0.0
                for i in range(n):
                    c0 = time.thread_time()
                    r = client.post(
                        "/v1/instances",
                        json={"name": f"vm-{i:05d}", "flavor": world.flavor, "image": world.image},
                        headers=world.tenant,
                    )
                    cpu += time.thread_time() - c0
                    body = r.get_json()
                    if r.status_code != 202 or not isinstance(body, dict):
                        raise RuntimeError(f"POST /v1/instances -> {r.status_code}: {body}")
                    ids.append(body["id"])
                wait_until(
                    ctx,
                    workers,
                    "ACTIVE",
                    lambda s: count_instances(s, "ACTIVE") == n,
                    failed_instances,
                    timeout,
                )
                return ids, cpu

            def delete(ids: list[str]) -> tuple[None, float]:
                cpu = 0.0
                for inst_id in ids:
                    c0 = time.thread_time()
                    r = client.delete(f"/v1/instances/{inst_id}", headers=world.tenant)
                    cpu += time.thread_time() - c0
                    if r.status_code != 202:
                        raise RuntimeError(f"DELETE /v1/instances -> {r.status_code}: {r.json}")
                wait_until(
                    ctx,
                    workers,
                    "DELETED and available",
                    lambda s: (
                        count_instances(s, "DELETED") == n and count_nodes(s, "available") == n
                    ),
                    failed_instances,
                    timeout,
                )
                return None, cpu

            run.phases["onboard"], _ = timed(workers, onboard)
            run.phases["boot"], ids = timed(workers, boot)
            run.phases["delete"], _ = timed(workers, lambda: delete(ids))
    finally:
        purge_rq_queue(ctx.queue.connection, ctx.queue.name)
        ctx.db.dispose()
    return run


def report(runs: list[Run]) -> None:
    def ms(v: float) -> str:
        return f"{v * 1000:.1f}"

    rows = []
    for r in runs:
        lc = r.lifecycle()
        n = r.nodes
        app_cpu = lc.worker_cpu + lc.api_cpu
        rows.append(
            [
                f"{r.backend}, {r.workers} {r.kind} worker{'s' if r.workers > 1 else ''}",
                str(n),
                f"{r.phases['onboard'].wall:.2f}",
                f"{r.phases['boot'].wall:.2f}",
                f"{r.phases['delete'].wall:.2f}",
                f"{n / lc.wall:.1f}",
                ms(app_cpu / n),
                ms(lc.api_cpu / n),
                ms((app_cpu + lc.cpu.postgres) / n) if r.backend == "postgresql" else "-",
                ms(lc.wall * r.workers / n),
                ms(lc.cpu.machine / n),
                f"{lc.cpu.foreign_share:.0%}",
                f"{r.probe:.1f}",
            ]
        )
    print()
    print(machine_line())
    print(
        "boot: N x POST /v1/instances (Flask test client) until all ACTIVE; delete: N x DELETE"
        " until all DELETED and nodes available; fake driver, zero delays. Per node, in ms:"
    )
    print(
        table(
            [
                "run",
                "N",
                "onboard s",
                "boot s",
                "delete s",
                "lifecycles/s",
                "cpu",
                "(api)",
                "cpu+pg",
                "occupancy",
                "machine",
                "other work",
                "probe ms",
            ],
            rows,
        )
    )
    print(
        "cpu = CPU of the worker process groups (workers, schedulers, reaped work horses)"
        " + CPU inside the API requests, / N, over boot + delete\n"
        "cpu+pg = cpu + the PostgreSQL server's CPU (all databases) / N;"
        " occupancy = wall x workers / N; machine = all busy CPU on the machine / N\n"
        "other work = share of the machine busy with processes that are not ours"
        " (not PostgreSQL, workers or this process) during boot + delete\n"
        "probe ms = CPU speed probe before the run (fixed Python workload; lower = faster)"
    )
    for r in runs:
        lc = r.lifecycle()
        cpu = (lc.worker_cpu + lc.api_cpu) / r.nodes
        ok = "met" if cpu <= 0.050 else "MISSED"
        print(
            f"  [{ok}] {r.backend}, {r.workers} {r.kind} worker(s):"
            f" control plane {ms(cpu)} ms CPU per node (target <= 50 ms)"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50, help="nodes (and instances)")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument(
        "--worker-kind",
        default="bms",
        help="comma-separated: bms (`bms worker`, jobs run in the worker process, the"
        " default) and/or bms-fork (`bms worker --mode fork`, a work horse per job)",
    )
    parser.add_argument("--sqlite", action="store_true", help="also run on SQLite")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each run, wait up to this many seconds for the machine to be"
        " < 15%% busy (0: don't wait)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    kinds = [k.strip() for k in args.worker_kind.split(",") if k.strip()]
    if not set(kinds) <= {"bms", "bms-fork"}:
        raise SystemExit(f"unknown --worker-kind in {args.worker_kind!r}")
    backends = ([] if args.no_postgres else ["postgresql"]) + (["sqlite"] if args.sqlite else [])
    runs = []
    try:
        for backend in backends:
            for kind in kinds:
                for count in counts:
                    runs.append(one_run(backend, count, args.nodes, kind, args.quiet_wait))
    finally:
        if "postgresql" in backends:
            drop_postgres(DB_NAME)
    report(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
