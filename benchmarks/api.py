"""API benchmark: enroll and list nodes on BMS Portal and on OpenStack Ironic, side by side.

What it does, in one run (``.venv/bin/python benchmarks/api.py [--nodes N]`` from the repo root):

1. BMS Portal on PostgreSQL: drops and creates the database ``bms_bench``, runs the Alembic
   migrations, creates an admin project/user/token through ``portal.services.identity``, and
   serves the production WSGI app under gunicorn on 127.0.0.1 (``--workers 2 --worker-class
   gthread --threads 4 --no-control-socket``), wrapped by ``benchmarks.timed_wsgi`` which adds a
   ``Server-Timing`` header (no change to the app).  Over one ``requests.Session``:

   - enrolls N nodes one ``POST /v1/nodes`` at a time, each body carrying one port (the MAC):
     one request per node+port (Ironic needs two: ``POST /v1/nodes`` then ``POST /v1/ports``);
   - enrolls N more through ``POST /v1/nodes/import`` in batches (default 250 per request);
   - times ``GET /v1/nodes?limit=1000`` (a full page of 1,000 detailed nodes with their ports),
     client wall time and server time from ``Server-Timing``.

2. In-process (Flask test client on the same database): counts SQL statements per
   ``GET /v1/nodes`` with ``limit=10`` and ``limit=1000``, with a SQLAlchemy
   ``before_cursor_execute`` listener, to show the count does not grow with the page.

3. OpenStack Ironic 39.0.0 (``benchmarks.peers.ironic``: one process, SQLite, noauth,
   fake-hardware): the same N sequential enrolls (node + port) and the same detailed list.

It prints a table with figures, ratios and the targets (>= 400 sequential enrolls/s,
1,000-node list <= 50 ms server time and >= 10x faster than Ironic).
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
    apply_env,
    bench_env,
    child_env,
    drop_postgres,
    log,
    machine_line,
    median,
    percentile,
    recreate_postgres,
    stop_group,
    table,
    wait_http,
)
from benchmarks.peers import ironic

DB_NAME = "bms_bench"
LIST_PATH = "/v1/nodes?limit=1000"


@dataclass
class PortalFigures:
    enroll_seconds: float = 0.0
    enroll_client_ms: list[float] = field(default_factory=list)
    enroll_server_ms: list[float] = field(default_factory=list)
    import_seconds: float = 0.0
    import_batch: int = 0
    list_client_ms: list[float] = field(default_factory=list)
    list_server_ms: list[float] = field(default_factory=list)
    list_count: int = 0
    list_bytes: int = 0
    same_as_schema: bool | None = None
    queries: dict[int, int] = field(default_factory=dict)
    statements: dict[int, list[str]] = field(default_factory=dict)
    inproc_ms: dict[int, float] = field(default_factory=dict)


@dataclass
class IronicFigures:
    version: str = ""
    enroll_seconds: float = 0.0
    list_client_ms: list[float] = field(default_factory=list)
    list_count: int = 0


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
    tag = 0x10 if prefix.endswith("seq") else 0x20
    return f"52:54:{tag:02x}:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def server_ms(response: requests.Response) -> float:
    header = response.headers.get("Server-Timing", "")
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
    env: dict[str, str], workers: int, threads: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = ironic.free_port()
    log_path = Path(env["BMS_VAR_DIR"]) / "gunicorn.log"
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
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


def run_portal_http(base: str, token: str, n: int, batch: int, repeats: int) -> PortalFigures:
    fig = PortalFigures(import_batch=batch)
    session = requests.Session()
    session.headers["X-Auth-Token"] = token
    try:
        # Warm up each gunicorn worker (imports, token cache, connection pool): not timed.
        for _ in range(8):
            session.get(f"{base}/v1/nodes?limit=1", timeout=30).raise_for_status()

        log(f"portal: {n} sequential POST /v1/nodes (node + 1 port each)")
        started = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            r = session.post(f"{base}/v1/nodes", json=node_body("bench-seq", i), timeout=30)
            fig.enroll_client_ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 201:
                raise RuntimeError(f"POST /v1/nodes -> {r.status_code}: {r.text[:500]}")
            fig.enroll_server_ms.append(server_ms(r))
        fig.enroll_seconds = time.perf_counter() - started

        log(f"portal: {n} nodes through POST /v1/nodes/import, {batch} per request")
        started = time.perf_counter()
        for first in range(0, n, batch):
            rows = [node_body("bench-imp", i) for i in range(first, min(n, first + batch))]
            r = session.post(f"{base}/v1/nodes/import", json=rows, timeout=300)
            r.raise_for_status()
            result = r.json()
            if result["failed"] or result["created"] != len(rows):
                raise RuntimeError(f"import failed: {str(result)[:500]}")
        fig.import_seconds = time.perf_counter() - started

        log(f"portal: GET {LIST_PATH} x{repeats} (+3 warm-up)")
        for round_index in range(3 + repeats):
            t0 = time.perf_counter()
            r = session.get(f"{base}{LIST_PATH}", timeout=60)
            r.raise_for_status()
            body = r.json()
            elapsed = (time.perf_counter() - t0) * 1000
            if round_index >= 3:
                fig.list_client_ms.append(elapsed)
                fig.list_server_ms.append(server_ms(r))
        fig.list_count = len(body["nodes"])
        fig.list_bytes = len(r.content)
    finally:
        session.close()
    return fig


def count_queries(fig: PortalFigures, token: str, profile: bool) -> None:
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
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
            print(f"\ncProfile of 10 x GET {LIST_PATH} (in-process, cumulative):")
            print(out.getvalue())
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(f"cProfile of 10 x GET {LIST_PATH} (in-process, own time):")
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


def run_ironic(n: int, repeats: int) -> IronicFigures:
    venv_dir = ironic.ensure_venv(BENCH_VAR)
    fig = IronicFigures(version=(venv_dir / ironic.MARKER_NAME).read_text().strip())
    with ironic.IronicServer(BENCH_VAR / "ironic-work", ironic.free_port(), venv_dir) as server:
        log(f"ironic {fig.version}: {n} sequential enrolls (POST /v1/nodes + POST /v1/ports)")
        fig.enroll_seconds = ironic.enroll_sequential(server.base_url, n, with_ports=True)
        log(f"ironic: GET {ironic.LIST_PATH} x{repeats} (+1 warm-up)")
        fig.list_client_ms = [
            t * 1000 for t in ironic.list_detailed(server.base_url, repeats, warmup=1)
        ]
        r = requests.get(
            f"{server.base_url}{ironic.LIST_PATH}", headers=ironic.API_HEADERS, timeout=120
        )
        fig.list_count = len(r.json()["nodes"])
    return fig


def report(n: int, p: PortalFigures, i: IronicFigures | None, args: argparse.Namespace) -> None:
    def ms(v: float) -> str:
        return f"{v:.1f} ms"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}x" if b else "-"

    p_rate = n / p.enroll_seconds
    rows = [
        [
            "sequential enroll, node + 1 port",
            f"{p_rate:.0f} nodes/s",
            f"{n / i.enroll_seconds:.1f} nodes/s" if i else "-",
            ratio(p_rate, n / i.enroll_seconds) if i else "-",
        ],
        [
            "  requests per node",
            "1",
            "2 (node, port)" if i else "-",
            "",
        ],
        [
            "  client ms/request median / p99",
            f"{median(p.enroll_client_ms):.2f} / {percentile(p.enroll_client_ms, 99):.2f}",
            "-",
            "",
        ],
        [
            "  server ms/request median / p99",
            f"{median(p.enroll_server_ms):.2f} / {percentile(p.enroll_server_ms, 99):.2f}",
            "-",
            "",
        ],
        [
            f"bulk import, {p.import_batch} nodes/request",
            f"{n / p.import_seconds:.0f} nodes/s",
            "no bulk API",
            "",
        ],
        [
            f"GET list, {p.list_count} vs {i.list_count if i else '-'} nodes: client median",
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
            "  server median (Server-Timing)",
            ms(median(p.list_server_ms)),
            "-",
            ratio(median(i.list_client_ms), median(p.list_server_ms)) if i else "-",
        ],
        ["  server p99", ms(percentile(p.list_server_ms, 99)), "-", ""],
        ["  response size", f"{p.list_bytes / 1e6:.2f} MB", "-", ""],
        [
            "  in-process (test client) median",
            ms(p.inproc_ms.get(1000, 0.0)),
            "-",
            "",
        ],
        [
            "  body equals NodeOut (marshmallow) dump",
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
    version = f"Ironic {i.version}" if i else "Ironic (skipped)"
    print()
    print(machine_line())
    print(
        f"N = {n}; portal: gunicorn {args.workers} gthread workers x {args.threads} threads,"
        f" PostgreSQL; list timings over {args.repeats} requests after warm-up"
    )
    print(table(["", "BMS Portal", version, "portal vs ironic"], rows))
    print()
    for limit in (10, 1000):
        print(f"SQL per GET /v1/nodes?limit={limit} ({p.queries.get(limit)} statements):")
        for stmt in p.statements.get(limit, []):
            print(f"    {stmt}")
    print()
    server = median(p.list_server_ms)
    checks = [
        (f"sequential enroll >= 400 nodes/s: {p_rate:.0f}", p_rate >= 400),
        (f"1,000-node list server time <= 50 ms: {server:.1f} ms", server <= 50),
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
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--no-ironic", action="store_true", help="skip the Ironic side")
    parser.add_argument("--profile", action="store_true", help="cProfile the list in-process")
    parser.add_argument("--keep-db", action="store_true", help=f"keep database {DB_NAME}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.nodes
    if n < 1000:
        log(f"note: with --nodes {n} the list pages hold fewer than 1,000 nodes")
    var_dir = BENCH_VAR / "api-var"
    url = recreate_postgres(DB_NAME)
    env = bench_env(url, var_dir)
    apply_env(env)
    from portal import migrate

    migrate.upgrade(url)
    token = seed_admin_token()
    gunicorn = None
    try:
        gunicorn, base = start_gunicorn(env, args.workers, args.threads)
        log(f"portal serving on {base} (log: {var_dir / 'gunicorn.log'})")
        portal_fig = run_portal_http(base, token, n, args.batch, args.repeats)
        stop_group(gunicorn)
        gunicorn = None
        count_queries(portal_fig, token, args.profile)
        ironic_fig = None if args.no_ironic else run_ironic(n, args.repeats)
        report(n, portal_fig, ironic_fig, args)
    finally:
        stop_group(gunicorn)
        if not args.keep_db:
            drop_postgres(DB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
