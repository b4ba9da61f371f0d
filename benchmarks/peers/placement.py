"""Run OpenStack Placement next to BMS Portal as the scheduler benchmark's reference peer.

Placement comes from PyPI into its own virtualenv (never the project's ``.venv``) and runs
under gunicorn on 127.0.0.1 with ``auth_strategy = noauth2`` (every request says
``X-Auth-Token: admin``) and SQLite, or PostgreSQL when given a URL. Its settings are the
defaults otherwise: deterministic candidate order, no ``max_allocation_candidates``.

A bare-metal node is one resource provider with an inventory of 1 of a custom resource
class and a set of traits. Placement has no batch create, so a node costs three requests
(create, inventories, traits); :meth:`PlacementPeer.load` sends them from a few threads.
A scheduling decision, :meth:`PlacementPeer.schedule_one`, is what a Placement-based
scheduler does for one instance: ``GET /allocation_candidates?...&limit=1`` and then
``PUT /allocations/{consumer}`` for the candidate it got.

Usage, from the repository root::

    .venv/bin/python benchmarks/peers/placement.py --providers 1000 --decisions 50

The virtualenv (``var/bench/placement-venv``) and the server's working directory
(``var/bench/placement``) live under ``var/bench/``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

if not __package__:
    # Run as a script: take this directory off the path (this file would shadow any
    # ``placement`` module) and put the repository root on it for ``benchmarks.*``.
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parents[1]))

from benchmarks._common import (
    BENCH_VAR,
    drop_postgres,
    log,
    median,
    percentile,
    recreate_postgres,
    stop_group,
    wait_http,
)
from benchmarks.peers._venv import free_port, python_runs, rebuild_venv, tail

# Pinned to what was measured here; gunicorn >= 27 is needed for --no-control-socket.
REQUIREMENTS = ("openstack-placement==16.0.0", "gunicorn==27.0.1", "psycopg2-binary==2.9.13")
STAMP_NAME = ".placement-installed"
WSGI_APP = "placement.wsgi.api:application"
# Highest microversion this client was written against; 1.28 is the floor because the
# allocation payload carries ``consumer_generation``.
WANTED_VERSION = (1, 39)
MIN_VERSION = (1, 28)
CONSUMER_TYPE_VERSION = (1, 38)  # from here on ``consumer_type`` is required
LOCKED_RETRIES = 8  # tries of a request that SQLite refused with "database is locked"
START_TIMEOUT = 120.0
PG_DB_NAME = "bms_bench_placement"

Version = tuple[int, int]


def _venv_ready(venv_dir: Path) -> bool:
    """Stamp matches the pinned requirements, the scripts exist and the interpreter runs."""
    stamp = venv_dir / STAMP_NAME
    if not stamp.is_file() or stamp.read_text().split() != list(REQUIREMENTS):
        return False
    if not all((venv_dir / "bin" / s).is_file() for s in ("gunicorn", "placement-manage")):
        return False
    return python_runs(venv_dir, "import placement.wsgi") is not None


def ensure_venv(base: Path = BENCH_VAR) -> Path:
    """Return ``base / "placement-venv"`` with Placement, gunicorn and psycopg2 in it.

    Idempotent: a stamp file lists the installed requirements; when it matches
    :data:`REQUIREMENTS` and the venv works, nothing is installed again. Otherwise the
    venv is rebuilt from scratch with its own pip (about 30 s, 140 MB).
    """
    venv_dir = Path(base) / "placement-venv"
    if _venv_ready(venv_dir):
        return venv_dir
    log(f"placement: installing {' '.join(REQUIREMENTS)} into {venv_dir}")
    started = time.monotonic()
    pip = rebuild_venv(venv_dir)
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    (venv_dir / STAMP_NAME).write_text("\n".join(REQUIREMENTS) + "\n")
    if not _venv_ready(venv_dir):
        raise RuntimeError(f"placement is not usable in {venv_dir} after install")
    log(f"placement: installed in {time.monotonic() - started:.0f} s")
    return venv_dir


def _peer_db_url(url: str) -> str:
    """The peer's venv has psycopg2, not psycopg 3 (which ``_common`` URLs name)."""
    for prefix in ("postgresql+psycopg://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def _render_config(workdir: Path, database_url: str, randomize: bool) -> str:
    """placement.conf: no Keystone, logs in *workdir*, otherwise Placement's defaults."""
    return f"""\
[DEFAULT]
debug = false
log_dir = {workdir}
log_file = placement.log

[api]
auth_strategy = noauth2

[placement_database]
connection = {database_url}

[placement]
randomize_allocation_candidates = {str(randomize).lower()}
"""


def _parse_version(text: str) -> Version:
    major, minor = text.split(".")
    return int(major), int(minor)


def _sqlite_locked(response: requests.Response) -> bool:
    return response.status_code == 500 and "database is locked" in response.text


class PlacementPeer:
    """A throw-away Placement under gunicorn on 127.0.0.1, as a context manager.

    On enter (or :meth:`start`) it makes sure the venv exists, writes ``placement.conf``
    into *workdir*, syncs a fresh schema (the SQLite file is deleted first; a PostgreSQL
    database given by *database_url* must be empty), starts gunicorn with *workers*
    sync workers in its own process group and waits until ``GET /`` answers. On exit
    (or :meth:`stop`) it stops that process group; the venv stays.

    Requests go through one ``requests.Session`` per calling thread, so :meth:`load`
    and :meth:`schedule_one` may be called from several threads at once. With
    concurrent callers, ``randomize=True`` spreads ``limit=1`` picks over all candidates
    (Placement's ``randomize_allocation_candidates``) instead of racing for the same one.
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        database_url: str | None = None,
        base: Path = BENCH_VAR,
        port: int = 0,
        randomize: bool = False,
        load_threads: int = 8,
    ) -> None:
        self.workers = workers
        self.base = Path(base)
        self.workdir = (self.base / "placement").resolve()
        self.port = port
        self.randomize = randomize
        self.load_threads = load_threads
        self.sqlite_path = self.workdir / "placement.sqlite"
        self.database_url = _peer_db_url(database_url or f"sqlite:///{self.sqlite_path}")
        self.config_path = self.workdir / "placement.conf"
        self.log_path = self.workdir / "placement.log"
        self.console_path = self.workdir / "gunicorn.log"
        self.base_url = ""
        self.version: Version = MIN_VERSION
        self._venv: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self.lock_retries = 0  # requests repeated because SQLite was locked

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> PlacementPeer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> PlacementPeer:
        self._venv = ensure_venv(self.base)
        self._prepare_workdir()
        self._db_sync()
        self.port = self.port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._proc = self._spawn_gunicorn()
        try:
            wait_http(f"{self.base_url}/", self._proc, timeout=START_TIMEOUT)
            self.version = self._negotiate_version()
        except BaseException as exc:
            self.stop()
            raise self._failure(f"placement did not start: {exc}") from exc
        log(
            f"placement: {self.workers} gunicorn worker(s) on {self.base_url}, "
            f"microversion {self._version_text()}, {self.database_url.split(':')[0]}"
        )
        return self

    def stop(self) -> None:
        """Stop gunicorn (SIGTERM to its process group, SIGKILL if it lingers)."""
        proc, self._proc = self._proc, None
        stop_group(proc)
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def _bin(self, name: str) -> str:
        assert self._venv is not None
        return str(self._venv / "bin" / name)

    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for stale in (self.sqlite_path, self.log_path, self.console_path):
            stale.unlink(missing_ok=True)
        self.config_path.write_text(_render_config(self.workdir, self.database_url, self.randomize))

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        # placement-manage takes --config-file; the WSGI app only reads this variable.
        env["OS_PLACEMENT_CONFIG_DIR"] = str(self.workdir)
        return env

    def _db_sync(self) -> None:
        sync = subprocess.run(
            [self._bin("placement-manage"), "--config-file", str(self.config_path), "db", "sync"],
            capture_output=True,
            text=True,
            env=self._child_env(),
            check=False,
        )
        if sync.returncode != 0:
            raise self._failure(f"placement-manage db sync failed:\n{sync.stdout}{sync.stderr}")

    def _spawn_gunicorn(self) -> subprocess.Popen[bytes]:
        command = [
            self._bin("gunicorn"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            # gunicorn 27 opens a control socket at one path per user: two servers clash.
            "--no-control-socket",
            # Load the app once, before forking: at load it writes the standard traits and
            # resource classes, and workers doing that at once on SQLite fail to boot
            # ("database is locked"). oslo.db drops connections inherited across fork.
            "--preload",
            WSGI_APP,
        ]
        with self.console_path.open("wb") as console:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._child_env(),
                start_new_session=True,
            )

    def _failure(self, message: str) -> RuntimeError:
        return RuntimeError(
            f"{message}\n--- {self.log_path} (tail) ---\n{tail(self.log_path)}"
            f"\n--- {self.console_path} (tail) ---\n{tail(self.console_path)}"
        )

    def _negotiate_version(self) -> Version:
        """The server's highest microversion, capped at the one this client knows."""
        root = self._call("GET", "/").json()
        server_max = _parse_version(root["versions"][0]["max_version"])
        if server_max < MIN_VERSION:
            raise RuntimeError(f"placement microversion {server_max} < {MIN_VERSION}")
        return min(server_max, WANTED_VERSION)

    def _version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def _session(self) -> requests.Session:
        """This thread's session, with the token and the negotiated microversion."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["X-Auth-Token"] = "admin"
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        # Set on every call: sessions made before negotiation must pick up the result.
        session.headers["OpenStack-API-Version"] = f"placement {self._version_text()}"
        return session

    def _call(
        self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any
    ) -> requests.Response:
        """Send one request; raise unless it succeeds or its status is in *allow*.

        With SQLite and more than one worker, two write transactions that both began
        by reading cannot both upgrade their lock: SQLite fails one at once with
        "database is locked" (a 500 from Placement, the transaction rolled back).
        Such a request is sent again after a short pause and counted.
        """
        kwargs.setdefault("timeout", 120)
        for attempt in range(LOCKED_RETRIES):
            response = self._session().request(method, f"{self.base_url}{path}", **kwargs)
            if not _sqlite_locked(response) or attempt == LOCKED_RETRIES - 1:
                break
            with self._sessions_lock:
                self.lock_retries += 1
            time.sleep(0.01 * 2**attempt)
        if not (response.ok or response.status_code in allow):
            raise RuntimeError(
                f"placement: {method} {path}: HTTP {response.status_code} {response.text[:500]}"
            )
        return response

    # -- loading --------------------------------------------------------------------

    def load(self, nodes: Sequence[Mapping[str, Any]]) -> float:
        """Register *nodes* as resource providers; return the elapsed seconds.

        Each node is ``{"uuid": str, "resource_class": "CUSTOM_...", "traits": [...]}``.
        Custom resource classes and traits are created first, once each; then every
        node takes three requests (provider, inventory of 1, traits), sent from
        ``load_threads`` threads.
        """
        started = time.perf_counter()
        self._ensure_custom("resource_classes", {n["resource_class"] for n in nodes})
        self._ensure_custom("traits", {t for n in nodes for t in n.get("traits", ())})
        done = 0
        step = max(1, len(nodes) // 10)
        lock = threading.Lock()

        def add(node: Mapping[str, Any]) -> None:
            nonlocal done
            self._add_provider(node)
            with lock:
                done += 1
                if done % step == 0 or done == len(nodes):
                    rate = done / (time.perf_counter() - started)
                    log(f"placement: {done}/{len(nodes)} providers ({rate:.0f}/s)")

        with ThreadPoolExecutor(max_workers=self.load_threads) as pool:
            # list(): surface the first exception raised in a worker thread.
            list(pool.map(add, nodes))
        elapsed = time.perf_counter() - started
        if nodes:
            self._warm_up(str(nodes[0]["resource_class"]))
        return elapsed

    def _warm_up(self, resource_class: str) -> None:
        """Untimed candidate queries, so decisions measure warm workers.

        A worker's first ``GET /allocation_candidates`` was seen to take 5x the usual
        time (caches and compiled queries are per process). Which sync worker accepts a
        request is up to the kernel (sequential requests were seen all going to one),
        so a few per worker is a best effort, not a guarantee.
        """
        params = {"resources": f"{resource_class}:1", "limit": "1"}
        for _ in range(2 * self.workers):
            self._call("GET", "/allocation_candidates", params=params)

    def _ensure_custom(self, collection: str, names: Iterable[str]) -> None:
        """PUT each CUSTOM_* name into /resource_classes or /traits (standard ones exist)."""
        for name in sorted(n for n in names if n.startswith("CUSTOM_")):
            self._call("PUT", f"/{collection}/{name}")

    def _add_provider(self, node: Mapping[str, Any]) -> None:
        rp_uuid = str(node["uuid"])
        created = self._call("POST", "/resource_providers", json={"uuid": rp_uuid, "name": rp_uuid})
        generation = created.json()["generation"]
        inventory = {
            "total": 1,
            "reserved": 0,
            "min_unit": 1,
            "max_unit": 1,
            "step_size": 1,
            "allocation_ratio": 1.0,
        }
        inventories = self._call(
            "PUT",
            f"/resource_providers/{rp_uuid}/inventories",
            json={
                "resource_provider_generation": generation,
                "inventories": {node["resource_class"]: inventory},
            },
        )
        self._call(
            "PUT",
            f"/resource_providers/{rp_uuid}/traits",
            json={
                "resource_provider_generation": inventories.json()["resource_provider_generation"],
                "traits": list(node.get("traits", ())),
            },
        )

    # -- scheduling -----------------------------------------------------------------

    def schedule_one(
        self,
        resource_class: str,
        required_traits: Iterable[str] = (),
        forbidden_traits: Iterable[str] = (),
        *,
        attempts: int = 3,
    ) -> tuple[float, float, str | None]:
        """One scheduling decision: (GET ms, PUT ms, chosen provider uuid or None).

        ``GET /allocation_candidates?resources=<rc>:1&required=...&limit=1``, then
        ``PUT /allocations/{new consumer}`` for the candidate. ``None`` means no
        candidate. If another caller claimed the candidate first (409), the decision
        starts over, up to *attempts* times, and the times of every try are summed.
        """
        params = {"resources": f"{resource_class}:1", "limit": "1"}
        required = [*required_traits, *(f"!{t}" for t in forbidden_traits)]
        if required:
            params["required"] = ",".join(required)
        get_ms = put_ms = 0.0
        for _ in range(attempts):
            started = time.perf_counter()
            candidate = self._first_candidate(params)
            get_ms += (time.perf_counter() - started) * 1000
            if candidate is None:
                return get_ms, put_ms, None
            started = time.perf_counter()
            claimed = self._allocate(candidate)
            put_ms += (time.perf_counter() - started) * 1000
            if claimed:
                return get_ms, put_ms, next(iter(candidate))
        return get_ms, put_ms, None

    def _first_candidate(self, params: Mapping[str, str]) -> dict[str, Any] | None:
        """The ``allocations`` of the first allocation request, or None."""
        response = self._call("GET", "/allocation_candidates", params=params)
        found = response.json()["allocation_requests"]
        return dict(found[0]["allocations"]) if found else None

    def _allocate(self, allocations: Mapping[str, Any]) -> bool:
        """PUT the allocation for a new consumer; False if the provider is taken (409)."""
        body: dict[str, Any] = {
            "allocations": allocations,
            "project_id": "bench-project",
            "user_id": "bench-user",
            "consumer_generation": None,  # a new consumer
        }
        if self.version >= CONSUMER_TYPE_VERSION:
            body["consumer_type"] = "INSTANCE"
        response = self._call("PUT", f"/allocations/{uuid.uuid4()}", allow=(409,), json=body)
        return response.status_code != 409


# -- command line -------------------------------------------------------------------

CLASSES = ("CUSTOM_BAREMETAL_SMALL", "CUSTOM_BAREMETAL_MEDIUM", "CUSTOM_BAREMETAL_LARGE")


def sample_nodes(n: int) -> list[dict[str, Any]]:
    """*n* nodes, the three classes in turn; a quarter GPU, a fifth NVMe (custom traits)."""
    nodes = []
    for i in range(n):
        traits = [t for t, every in (("CUSTOM_GPU", 4), ("CUSTOM_NVME", 5)) if i % every == 0]
        nodes.append(
            {"uuid": str(uuid.UUID(int=i + 1)), "resource_class": CLASSES[i % 3], "traits": traits}
        )
    return nodes


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=50, help="sequential decisions")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="loading threads")
    parser.add_argument("--resource-class", default="CUSTOM_BAREMETAL_MEDIUM")
    parser.add_argument("--required", default="", help="comma-separated traits")
    parser.add_argument("--forbidden", default="CUSTOM_GPU", help="comma-separated traits")
    parser.add_argument("--postgres", action="store_true", help=f"database {PG_DB_NAME}")
    parser.add_argument("--base", type=Path, default=BENCH_VAR, help="venv and workdir parent")
    return parser.parse_args(argv)


def _split(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _stats(label: str, values: list[float]) -> str:
    return f"{label} median {median(values):.1f} ms, p99 {percentile(values, 99):.1f} ms"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    database_url = recreate_postgres(PG_DB_NAME) if args.postgres else None
    peer = PlacementPeer(
        workers=args.workers,
        database_url=database_url,
        base=args.base,
        load_threads=args.threads,
    )
    try:
        with peer:
            seconds = peer.load(sample_nodes(args.providers))
            print(
                f"placement: loaded {args.providers} providers in {seconds:.1f} s"
                f" ({args.providers / seconds:.0f}/s, 3 requests each,"
                f" {peer.lock_retries} repeated after 'database is locked')"
            )
            gets, puts, totals = [], [], []
            for _ in range(args.decisions):
                get_ms, put_ms, chosen = peer.schedule_one(
                    args.resource_class, _split(args.required), _split(args.forbidden)
                )
                if chosen is None:
                    log("placement: no candidate left; stopping the decisions")
                    break
                gets.append(get_ms)
                puts.append(put_ms)
                totals.append(get_ms + put_ms)
    finally:
        if args.postgres:
            drop_postgres(PG_DB_NAME)
    if not totals:
        print("placement: no decision made")
        return 1
    print(
        f"placement 16.0.0, {args.providers} providers, {args.workers} worker(s), "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}, {len(totals)} decisions:"
    )
    print("  " + _stats("GET /allocation_candidates", gets))
    print("  " + _stats("PUT /allocations          ", puts))
    print("  " + _stats("decision                  ", totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
