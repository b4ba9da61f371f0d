"""API benchmark: enroll and list nodes on BMS Portal and on OpenStack Ironic, side by side.

Run from the repository root: ``.venv/bin/python benchmarks/api.py [--nodes N]``.

1. BMS Portal on PostgreSQL: drops and creates the database ``bms_bench``, runs the Alembic
   migrations (``portal.migrate.upgrade``), creates an admin project/user/token through
   ``portal.services.identity`` and serves the production WSGI app under gunicorn on
   127.0.0.1 as ``bms api`` runs it (``--workers 2``, gevent workers; ``--worker-class gthread``
   for the threaded worker),
   wrapped by ``benchmarks.timed_wsgi``, which adds a ``Server-Timing`` header (the app is
   not changed for it). Over one keep-alive connection (``benchmarks._http``: the standard
   library's ``http.client``; ``requests`` adds ~0.5 ms of client CPU per call) it

   - times 300 ``GET /healthz`` (no auth, no database): the floor of one request;
   - enrolls N nodes one ``POST /v1/nodes`` at a time, each body carrying one port (MAC):
     one request per node + port, where Ironic needs two (``POST /v1/nodes``, ``POST
     /v1/ports``); then ``--requests-sample`` (300) more through a ``requests.Session``,
     reported beside it;
   - enrolls N more through ``POST /v1/nodes/import``, in batches (default 250 per request).

2. OpenStack Ironic 39.0.0 (``benchmarks.peers.ironic``: one process, SQLite, noauth,
   fake-hardware) next to it: the same N sequential enrolls, node + port, through the
   same client.

3. The list, with both servers up: ``GET /v1/nodes?limit=1000`` on the portal (1,000 nodes
   with their ports, the same document as a node's GET) and ``GET
   /v1/nodes?detail=True&limit=1000`` on Ironic, alternately, so a change in the VM's speed
   hits both alike. Client wall time (request to decoded JSON) for both; server time from
   ``Server-Timing`` for the portal.

4. In-process (Flask test client, same database): SQL statements per ``GET /v1/nodes`` for
   ``limit=10`` and ``limit=1000`` (a SQLAlchemy ``before_cursor_execute`` listener), and a
   check that the list's nodes equal a marshmallow ``NodeOut`` dump of the same rows.

Every phase first waits (up to ``--quiet-wait`` s) for the machine to be idle, and records a
CPU speed probe and how busy the machine was with other work meanwhile: this is a shared,
2-CPU VM. Targets checked: >= 400 sequential enrolls/s; 1,000-node list <= 50 ms server
time and >= 10x faster than Ironic.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

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
    median,
    percentile,
    recreate_postgres,
    stop_group,
    table,
    wait_http,
    wait_quiet,
)
from benchmarks._http import KeepAliveClient, Reply
from benchmarks.peers import ironic
from benchmarks.peers._venv import free_port

DB_NAME = "bms_bench"
LIST_PATH = "/v1/nodes?limit=1000"


@dataclass
class Phase:
    """What was seen around one timed phase."""

    busy_before: float = 0.0  # share of the machine busy in the second before
    probe_ms: float = 0.0  # CPU speed probe before (lower = faster)
    cpu: CpuUse = field(default_factory=CpuUse)


@dataclass
class Figures:
    name: str
    phases: dict[str, Phase] = field(default_factory=dict)
    enroll_seconds: float = 0.0
    enroll_client_ms: list[float] = field(default_factory=list)
    enroll_server_ms: list[float] = field(default_factory=list)
    floor_client_ms: list[float] = field(default_factory=list)
    # The same with a requests.Session (a sample after the main run), for reference.
    requests_seconds: float = 0.0
    requests_count: int = 0
    requests_client_ms: list[float] = field(default_factory=list)
    requests_server_ms: list[float] = field(default_factory=list)
    requests_floor_ms: list[float] = field(default_factory=list)
    import_seconds: float = 0.0
    list_client_ms: list[float] = field(default_factory=list)
    list_server_ms: list[float] = field(default_factory=list)
    list_count: int = 0
    list_bytes: int = 0
    queries: dict[int, int] = field(default_factory=dict)
    statements: dict[int, list[str]] = field(default_factory=dict)
    inproc_ms: dict[int, float] = field(default_factory=dict)
    same_as_schema: bool | None = None


class Timed:
    """``with Timed(fig, "enroll", sessions, quiet_wait):`` records a :class:`Phase`."""

    def __init__(self, figs: list[Figures], name: str, sessions: set[int], quiet: float):
        self.figs, self.name, self.sessions, self.quiet = figs, name, sessions, quiet

    def __enter__(self) -> None:
        self.phase = Phase(busy_before=wait_quiet(self.quiet), probe_ms=cpu_probe())
        self.start = cpu_sample(self.sessions)

    def __exit__(self, *_: object) -> None:
        self.phase.cpu = cpu_used(self.start, self.sessions)
        for fig in self.figs:
            fig.phases[self.name] = self.phase


def node_body(prefix: str, i: int) -> dict[str, Any]:
    """A fake node with BMC credentials (the password is encrypted at rest) and one port."""
    return {
        "name": f"{prefix}-{i:05d}",
        "driver": "fake",
        "resource_class": "baremetal",
        "driver_info": {
            "bmc_address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            "bmc_username": "admin",
            "bmc_password": "s3cret-pw",
        },
        "properties": {"cpus": 8, "memory_mb": 16384, "local_gb": 100, "cpu_arch": "x86_64"},
        "ports": [{"address": mac(prefix, i)}],
    }


def mac(prefix: str, i: int) -> str:
    tag = {"seq": 0x10, "imp": 0x20, "req": 0x30}[prefix.rsplit("-", 1)[-1]]
    return f"52:54:{tag:02x}:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def server_ms(response: requests.Response | Reply) -> float:
    header = response.headers.get("server-timing", "")
    for part in header.split(";"):
        if part.strip().startswith("dur="):
            return float(part.strip()[4:])
    raise RuntimeError(f"no Server-Timing header in the response: {header!r}")


def seed_admin_token() -> str:
    from portal.core.config import Settings
    from portal.services import identity
    from portal.services.context import Context
    from tenants.roles import ADMIN

    ctx = Context.build(Settings.from_env())
    try:
        with ctx.session() as s:
            project = identity.create_project(ctx, s, "bench", None)
            user = identity.create_user(s, "bench-admin", project, ADMIN)
            _, token = identity.create_token(s, user, "api benchmark", None)
    finally:
        ctx.db.dispose()
    return token


def start_gunicorn(
    env: dict[str, str], workers: int, threads: int, worker_class: str = "gevent"
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log_path = Path(env["BMS_VAR_DIR"]) / "gunicorn.log"
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        # As `bms api` runs it: gevent's worker with socket timeouts (portal.httpworker),
        # or gunicorn's threaded one for a side-by-side figure.
        *(
            ["--worker-class", "portal.httpworker.GeventWorker", "--worker-connections", "1000"]
            if worker_class == "gevent"
            else ["--worker-class", "gthread", "--threads", str(threads)]
        ),
        "--no-control-socket",
        "benchmarks.timed_wsgi:app",
    ]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", proc)
    except BaseException:
        stop_group(proc)
        raise
    return proc, base


def portal_enroll(
    client: KeepAliveClient,
    session: requests.Session,
    base: str,
    n: int,
    args: argparse.Namespace,
    fig: Figures,
    sessions: set[int],
) -> None:
    # Warm up each gunicorn worker (imports, token cache, connection pool): not timed.
    for _ in range(8):
        session.get(f"{base}/v1/nodes?limit=1", timeout=30).raise_for_status()
        client.get("/v1/nodes?limit=1").raise_for_status()
    # The floor: a request that does no work (no auth, no database) on the same path.
    for _ in range(300):
        t0 = time.perf_counter()
        client.get("/healthz").raise_for_status()
        fig.floor_client_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        session.get(f"{base}/healthz", timeout=30).raise_for_status()
        fig.requests_floor_ms.append((time.perf_counter() - t0) * 1000)

    with Timed([fig], "enroll", sessions, args.quiet_wait):
        log(f"portal: {n} sequential POST /v1/nodes (node + 1 port each)")
        started = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            r = client.post("/v1/nodes", node_body("bench-seq", i))
            r.json()  # the client has the node, as requests' caller would
            fig.enroll_client_ms.append((time.perf_counter() - t0) * 1000)
            if r.status != 201:
                raise RuntimeError(f"POST /v1/nodes -> {r.status}: {r.body[:500]!r}")
            fig.enroll_server_ms.append(server_ms(r))
        fig.enroll_seconds = time.perf_counter() - started

    if args.requests_sample:
        count = fig.requests_count = min(args.requests_sample, n)
        with Timed([fig], "enroll (requests)", sessions, args.quiet_wait):
            log(f"portal: {count} more sequential POST /v1/nodes through a requests.Session")
            started = time.perf_counter()
            for i in range(count):
                t0 = time.perf_counter()
                r2 = session.post(f"{base}/v1/nodes", json=node_body("bench-req", i), timeout=30)
                r2.json()
                fig.requests_client_ms.append((time.perf_counter() - t0) * 1000)
                if r2.status_code != 201:
                    raise RuntimeError(f"POST /v1/nodes -> {r2.status_code}: {r2.text[:500]}")
                fig.requests_server_ms.append(server_ms(r2))
            fig.requests_seconds = time.perf_counter() - started

    with Timed([fig], "import", sessions, args.quiet_wait):
        log(f"portal: {n} nodes through POST /v1/nodes/import, {args.batch} per request")
        started = time.perf_counter()
        for first in range(0, n, args.batch):
            rows = [node_body("bench-imp", i) for i in range(first, min(n, first + args.batch))]
            r = client.post("/v1/nodes/import", rows)
            r.raise_for_status()
            result = r.json()
            if result["failed"] or result["created"] != len(rows):
                raise RuntimeError(f"import failed: {str(result)[:500]}")
        fig.import_seconds = time.perf_counter() - started


def ironic_enroll(server: ironic.IronicServer, n: int, fig: Figures, quiet: float) -> set[int]:
    proc = getattr(server, "_proc", None)
    sessions = {proc.pid} if proc is not None else set()
    with Timed([fig], "enroll", sessions, quiet):
        log(f"ironic: {n} sequential enrolls (POST /v1/nodes + POST /v1/ports)")
        fig.enroll_seconds = ironic.enroll_sequential(server.base_url, n, with_ports=True)
    return sessions


def list_phase(
    portal: requests.Session,
    base: str,
    p: Figures,
    ironic_url: str | None,
    i: Figures | None,
    repeats: int,
    sessions: set[int],
    quiet: float,
) -> None:
    """Alternate portal and Ironic list requests (3 untimed rounds first)."""
    other = requests.Session()
    other.headers.update(ironic.API_HEADERS)
    figs = [p] if i is None else [p, i]
    try:
        with Timed(figs, "list", sessions, quiet):
            log(f"list: GET {LIST_PATH} x{repeats}" + (" alternating with Ironic" if i else ""))
            for round_index in range(3 + repeats):
                t0 = time.perf_counter()
                r = portal.get(f"{base}{LIST_PATH}", timeout=60)
                r.raise_for_status()
                body = r.json()
                elapsed = (time.perf_counter() - t0) * 1000
                if round_index >= 3:
                    p.list_client_ms.append(elapsed)
                    p.list_server_ms.append(server_ms(r))
                p.list_count, p.list_bytes = len(body["nodes"]), len(r.content)
                if i is None or ironic_url is None:
                    continue
                t0 = time.perf_counter()
                r = other.get(f"{ironic_url}{ironic.LIST_PATH}", timeout=120)
                r.raise_for_status()
                body = r.json()
                elapsed = (time.perf_counter() - t0) * 1000
                if round_index >= 3:
                    i.list_client_ms.append(elapsed)
                i.list_count, i.list_bytes = len(body["nodes"]), len(r.content)
    finally:
        other.close()


def count_queries(fig: Figures, token: str, profile: bool) -> None:
    """SQL statements per list request, in-process with the Flask test client."""
    from sqlalchemy import event

    from portal.app import create_app
    from portal.core.config import Settings
    from portal.services.context import Context

    ctx = Context.build(Settings.from_env())
    app = create_app(context=ctx)
    client = app.test_client()
    headers = {"X-Auth-Token": token}
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split())[:110])

    event.listen(ctx.db.engine, "before_cursor_execute", on_execute)
    try:
        for limit in (10, 1000):
            url = f"/v1/nodes?limit={limit}"
            for _ in range(3):  # warm: token cache, compiled-statement cache, pool
                assert client.get(url, headers=headers).status_code == 200
            seen.clear()
            r = client.get(url, headers=headers)
            assert r.status_code == 200, r.status_code
            fig.queries[limit] = len(seen)
            fig.statements[limit] = list(seen)
            timings = []
            for _ in range(20):
                t0 = time.perf_counter()
                client.get(url, headers=headers)
                timings.append((time.perf_counter() - t0) * 1000)
            fig.inproc_ms[limit] = median(timings)
        fig.same_as_schema = list_matches_schema(app, client, headers)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(10):
                client.get(LIST_PATH, headers=headers)
            profiler.disable()
            for order, count in (("cumulative", 35), ("tottime", 25)):
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(count)
                print(f"\ncProfile of 10 x GET {LIST_PATH} (in-process, by {order}):")
                print(out.getvalue())
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", on_execute)
        ctx.db.dispose()


def list_matches_schema(app: Any, client: Any, headers: dict[str, str]) -> bool:
    """Does the list endpoint give exactly what ``NodeOut`` (marshmallow) would?"""
    from sqlalchemy import select

    from portal.api.nodes.schemas import NodeOut
    from portal.core.models import Node

    listed = client.get(LIST_PATH, headers=headers).json["nodes"]
    ctx = app.extensions["bms"]
    with ctx.session() as s:
        nodes = s.scalars(select(Node).order_by(Node.created_at, Node.id).limit(1000)).all()
        expected = app.json.loads(app.json.dumps(NodeOut(many=True).dump(nodes)))
    return bool(listed == expected)


def report(n: int, p: Figures, i: Figures | None, version: str, args: argparse.Namespace) -> None:
    def ms(v: float) -> str:
        return f"{v:.1f} ms"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}x" if b else "-"

    def dist(values: list[float]) -> str:
        return f"{median(values):.2f} / {percentile(values, 99):.2f}"

    p_rate = n / p.enroll_seconds
    i_rate = n / i.enroll_seconds if i else 0.0
    e = p.phases["enroll"].cpu
    rows = [
        [
            "sequential enroll, node + 1 port",
            f"{p_rate:.0f} nodes/s",
            f"{i_rate:.1f} nodes/s" if i else "-",
            ratio(p_rate, i_rate) if i else "-",
        ],
        ["  requests per node", "1", "2 (node, port)" if i else "-", ""],
        ["  client ms/request median / p99", dist(p.enroll_client_ms), "-", ""],
        ["  server ms/request median / p99", dist(p.enroll_server_ms), "-", ""],
        [
            "  server CPU per node (app + PostgreSQL)",
            f"{e.sessions / n * 1000:.1f} + {e.postgres / n * 1000:.1f} ms",
            f"{i.phases['enroll'].cpu.sessions / n * 1000:.1f} ms (SQLite)" if i else "-",
            "",
        ],
        [
            "  floor: GET /healthz client median",
            f"{median(p.floor_client_ms):.2f} ms = {1000 / median(p.floor_client_ms):.0f}/s",
            "-",
            "",
        ],
        [
            f"  same through requests.Session ({p.requests_count} nodes)",
            f"{p.requests_count / p.requests_seconds:.0f} nodes/s" if p.requests_count else "-",
            "-",
            "",
        ],
        [
            "    client / server ms median, floor",
            f"{median(p.requests_client_ms):.2f} / {median(p.requests_server_ms):.2f},"
            f" {median(p.requests_floor_ms):.2f}"
            if p.requests_count
            else "-",
            "-",
            "",
        ],
        [
            f"bulk import, {args.batch} nodes/request",
            f"{n / p.import_seconds:.0f} nodes/s",
            "no bulk API",
            "",
        ],
        [
            f"GET list of {p.list_count} / {i.list_count if i else '-'} nodes: client median",
            ms(median(p.list_client_ms)),
            ms(median(i.list_client_ms)) if i else "-",
            ratio(median(i.list_client_ms), median(p.list_client_ms)) if i else "-",
        ],
        [
            "  client p99",
            ms(percentile(p.list_client_ms, 99)),
            ms(percentile(i.list_client_ms, 99)) if i else "-",
            ratio(percentile(i.list_client_ms, 99), percentile(p.list_client_ms, 99)) if i else "-",
        ],
        [
            "  client min",
            ms(min(p.list_client_ms)),
            ms(min(i.list_client_ms)) if i else "-",
            ratio(min(i.list_client_ms), min(p.list_client_ms)) if i else "-",
        ],
        [
            "  server median / p99 / min (Server-Timing)",
            f"{median(p.list_server_ms):.1f} / {percentile(p.list_server_ms, 99):.1f}"
            f" / {min(p.list_server_ms):.1f} ms",
            "-",
            ratio(median(i.list_client_ms), median(p.list_server_ms)) if i else "-",
        ],
        [
            "  response size",
            f"{p.list_bytes / 1e6:.2f} MB",
            f"{i.list_bytes / 1e6:.2f} MB" if i else "-",
            "",
        ],
        ["  in-process (test client) median", ms(p.inproc_ms.get(1000, 0.0)), "-", ""],
        [
            "  nodes equal a NodeOut (marshmallow) dump",
            {True: "yes", False: "NO", None: "-"}[p.same_as_schema],
            "-",
            "",
        ],
        [
            "SQL statements per list, limit=10 / 1000",
            f"{p.queries.get(10)} / {p.queries.get(1000)}",
            "-",
            "",
        ],
    ]
    print()
    print(machine_line())
    print(
        f"N = {n}; portal: gunicorn {args.workers} {args.worker_class} workers"
        + (f" x {args.threads} threads," if args.worker_class == "gthread" else ",")
        + f" PostgreSQL; {args.repeats} timed list requests each, after 3 untimed"
    )
    print(table(["", "BMS Portal", version, "portal vs ironic"], rows))
    print("conditions per phase (busy before / CPU probe ms / other work during):")
    for fig in [p] + ([i] if i else []):
        parts = [
            f"{name} {ph.busy_before:.0%} / {ph.probe_ms:.1f} / {ph.cpu.foreign_share:.0%}"
            for name, ph in fig.phases.items()
        ]
        print(f"  {fig.name}: " + "; ".join(parts))
    print()
    for limit in (10, 1000):
        print(f"SQL per GET /v1/nodes?limit={limit} ({p.queries.get(limit)} statements):")
        for stmt in p.statements.get(limit, []):
            print(f"    {stmt}")
    print()
    server = median(p.list_server_ms)
    checks = [
        (f"sequential enroll >= 400 nodes/s: {p_rate:.0f}", p_rate >= 400),
        (
            f"{p.list_count}-node list server time (median) <= 50 ms: {server:.1f} ms",
            server <= 50 and p.list_count >= 1000,
        ),
        (
            f"SQL per list independent of page size: {p.queries.get(10)} vs {p.queries.get(1000)}",
            p.queries.get(10) == p.queries.get(1000),
        ),
    ]
    if i:
        client_ratio = median(i.list_client_ms) / median(p.list_client_ms)
        checks.append(
            (
                f"list >= 10x faster than Ironic (client medians): {client_ratio:.1f}x",
                client_ratio >= 10,
            )
        )
    for text, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="nodes per enroll mode")
    parser.add_argument("--batch", type=int, default=250, help="nodes per import request")
    parser.add_argument("--repeats", type=int, default=50, help="timed list requests")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument(
        "--worker-class",
        choices=("gevent", "gthread"),
        default="gevent",
        help="gunicorn worker class (gevent: what bms api runs)",
    )
    parser.add_argument(
        "--requests-sample",
        type=int,
        default=300,
        help="sequential enrolls repeated through a requests.Session, for reference (0: none)",
    )
    parser.add_argument("--no-ironic", action="store_true", help="skip the Ironic side")
    parser.add_argument("--profile", action="store_true", help="cProfile the list in-process")
    parser.add_argument("--keep-db", action="store_true", help=f"keep database {DB_NAME}")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each phase, wait up to this many seconds for the machine to be"
        " < 15%% busy (0: don't wait)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.nodes
    if n < 1000:
        log(f"note: with --nodes {n} the list pages hold fewer than 1,000 nodes")
    venv_dir = None if args.no_ironic else ironic.ensure_venv(BENCH_VAR)
    version = "Ironic (skipped)"
    if venv_dir is not None:
        version = f"Ironic {(venv_dir / ironic.MARKER_NAME).read_text().strip()}"
    var_dir = BENCH_VAR / "api-var"
    url = recreate_postgres(DB_NAME)
    env = bench_env(url, var_dir)
    apply_env(env)
    from portal import migrate

    migrate.upgrade(url)
    token = seed_admin_token()
    p = Figures("portal")
    i = None if venv_dir is None else Figures("ironic")
    gunicorn = None
    session = requests.Session()
    session.headers["X-Auth-Token"] = token
    try:
        gunicorn, base = start_gunicorn(env, args.workers, args.threads, args.worker_class)
        log(f"portal serving on {base} (log: {var_dir / 'gunicorn.log'})")
        sessions = {gunicorn.pid}
        client = KeepAliveClient(base, {"X-Auth-Token": token})
        portal_enroll(client, session, base, n, args, p, sessions)
        client.close()
        if i is None:
            list_phase(session, base, p, None, None, args.repeats, sessions, args.quiet_wait)
        else:
            port = free_port()
            with ironic.IronicServer(BENCH_VAR / "ironic-work", port, venv_dir) as server:
                sessions |= ironic_enroll(server, n, i, args.quiet_wait)
                list_phase(
                    session, base, p, server.base_url, i, args.repeats, sessions, args.quiet_wait
                )
        session.close()
        stop_group(gunicorn)
        gunicorn = None
        count_queries(p, token, args.profile)
        report(n, p, i, version, args)
    finally:
        session.close()
        stop_group(gunicorn)
        if not args.keep_db:
            drop_postgres(DB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
