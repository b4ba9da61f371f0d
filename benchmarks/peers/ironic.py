"""Run OpenStack Ironic next to BMS Portal for side-by-side benchmarks.

Ironic comes from PyPI into its own virtualenv (never the project's ``.venv``)
and runs as one process (``ironic --config-file ...``: API and conductor
together) on 127.0.0.1 with SQLite, ``auth_strategy = noauth``,
``rpc_transport = none`` and the ``fake-hardware`` hardware type with fake
(or no-op) interfaces, so it never talks to a BMC, Keystone, Neutron or Glance.

Ironic has no bulk enrollment API: every node is one ``POST /v1/nodes`` and
every NIC one more ``POST /v1/ports``, so :func:`enroll_sequential` measures
exactly that request sequence.

Usage, from the repository root::

    python -m benchmarks.peers.ironic --nodes 1000

The virtualenv and the server's working directory live under ``var/bench/``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import requests

if not __package__:  # run as a script: the repository root on the path for ``benchmarks.*``
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks._http import KeepAliveClient
from benchmarks.peers._venv import free_port, python_runs, rebuild_venv, tail

IRONIC_VERSION = "39.0.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = REPO_ROOT / "var" / "bench"
API_HEADERS = {"X-OpenStack-Ironic-API-Version": "latest"}
LIST_PATH = "/v1/nodes?detail=True&limit=1000"
MARKER_NAME = ".ironic-installed"
START_TIMEOUT = 120.0

# Interface kinds of the fake-hardware type and what to enable for each one.
# ``network`` has no fake implementation: ``noop`` is its stand-in.
FAKE_INTERFACES: dict[str, str] = {
    "bios": "fake",
    "boot": "fake",
    "console": "fake",
    "deploy": "fake",
    "firmware": "fake",
    "inspect": "fake",
    "management": "fake",
    "network": "noop",
    "power": "fake",
    "raid": "fake",
    "rescue": "fake",
    "storage": "fake",
    "vendor": "fake",
}


def _log(message: str) -> None:
    print(f"[ironic-peer] {message}", file=sys.stderr, flush=True)


def _installed_version(venv_dir: Path) -> str | None:
    """Ask the venv which ironic it holds; ``None`` if it cannot say."""
    out = python_runs(venv_dir, "import importlib.metadata as m; print(m.version('ironic'))")
    version = (out or "").strip()
    return version or None


def _venv_ready(venv_dir: Path) -> bool:
    """Fast check: marker present, scripts present and the interpreter runs."""
    marker = venv_dir / MARKER_NAME
    if not marker.is_file() or not marker.read_text().strip():
        return False
    for script in ("ironic", "ironic-dbsync"):
        if not (venv_dir / "bin" / script).is_file():
            return False
    return python_runs(venv_dir, "pass", timeout=30) is not None


def ensure_venv(base: Path = DEFAULT_BASE) -> Path:
    """Return ``base / "ironic-venv"`` with ironic installed in it.

    Installs ``ironic==39.0.0`` (or, if pip refuses that exact version, the
    newest ironic it offers) into a fresh virtualenv.  The installed version
    is recorded in a marker file; when the marker, the ``ironic`` scripts and
    a working interpreter are all there, nothing is installed again.
    """
    venv_dir = Path(base) / "ironic-venv"
    if _venv_ready(venv_dir):
        return venv_dir

    _log(f"installing ironic into {venv_dir} (about half a minute)")
    started = time.monotonic()
    pip = rebuild_venv(venv_dir)
    pinned = subprocess.run([*pip, f"ironic=={IRONIC_VERSION}"], check=False)
    if pinned.returncode != 0:
        _log(f"ironic=={IRONIC_VERSION} refused; installing the newest ironic")
        subprocess.run([*pip, "--upgrade", "ironic"], check=True)

    version = _installed_version(venv_dir)
    if version is None:
        raise RuntimeError(f"ironic is not importable in {venv_dir} after install")
    (venv_dir / MARKER_NAME).write_text(version + "\n")
    _log(f"ironic {version} installed in {time.monotonic() - started:.0f} s")
    return venv_dir


def _render_config(workdir: Path, port: int) -> str:
    """ironic.conf for an isolated, single-process, fake-hardware Ironic."""
    interface_lines = []
    for kind, impl in FAKE_INTERFACES.items():
        interface_lines.append(f"enabled_{kind}_interfaces = {impl}")
        interface_lines.append(f"default_{kind}_interface = {impl}")
    interfaces = "\n".join(interface_lines)
    return f"""\
[DEFAULT]
host = ironic-bench
my_ip = 127.0.0.1
auth_strategy = noauth
rpc_transport = none
enabled_hardware_types = fake-hardware
{interfaces}
debug = false
use_stderr = false
log_dir = {workdir}
log_file = ironic.log
state_path = {workdir}

[api]
host_ip = 127.0.0.1
port = {port}
api_workers = 1

[database]
connection = sqlite:///{workdir / "ironic.sqlite"}

[conductor]
automated_clean = false
sync_power_state_interval = -1
send_sensor_data = false

[dhcp]
dhcp_provider = none

[oslo_concurrency]
lock_path = {workdir / "locks"}

[oslo_messaging_notifications]
driver = noop
"""


class IronicServer:
    """A throw-away single-process Ironic on 127.0.0.1, as a context manager.

    On enter it writes ``ironic.conf`` into *workdir*, creates a fresh SQLite
    schema there (an existing database file is removed first), starts
    ``ironic`` and waits until ``GET /v1/`` answers.  On exit it sends SIGTERM
    to the process group, then SIGKILL if it has not stopped within 30 s.
    """

    def __init__(self, workdir: Path, port: int, venv_dir: Path | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port
        self.venv_dir = venv_dir
        self.base_url = f"http://127.0.0.1:{port}"
        self.config_path = self.workdir / "ironic.conf"
        self.log_path = self.workdir / "ironic.log"
        self.console_path = self.workdir / "ironic.console.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _bin(self, name: str) -> str:
        assert self.venv_dir is not None
        return str(self.venv_dir / "bin" / name)

    def _failure(self, message: str) -> RuntimeError:
        return RuntimeError(
            f"{message}\n--- {self.log_path} (tail) ---\n{tail(self.log_path)}"
            f"\n--- {self.console_path} (tail) ---\n{tail(self.console_path)}"
        )

    def __enter__(self) -> IronicServer:
        if self.venv_dir is None:
            self.venv_dir = ensure_venv(DEFAULT_BASE)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "locks").mkdir(exist_ok=True)
        for stale in ("ironic.sqlite", "ironic.log", "ironic.console.log"):
            (self.workdir / stale).unlink(missing_ok=True)
        self.config_path.write_text(_render_config(self.workdir, self.port))

        dbsync = subprocess.run(
            [self._bin("ironic-dbsync"), "--config-file", str(self.config_path), "create_schema"],
            capture_output=True,
            text=True,
            check=False,
        )
        if dbsync.returncode != 0:
            raise self._failure(f"ironic-dbsync failed:\n{dbsync.stdout}{dbsync.stderr}")

        with self.console_path.open("wb") as console:
            self._proc = subprocess.Popen(
                [self._bin("ironic"), "--config-file", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._failure(f"ironic exited with status {self._proc.returncode}")
            try:
                response = requests.get(f"{self.base_url}/v1/", timeout=2)
            except requests.RequestException:
                time.sleep(0.5)
                continue
            if response.status_code == 200:
                return
            time.sleep(0.5)
        raise self._failure(f"ironic did not answer GET /v1/ within {START_TIMEOUT:.0f} s")

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()


def _session() -> requests.Session:
    session = requests.Session()
    session.headers.update(API_HEADERS)
    return session


def _mac(index: int) -> str:
    return "52:54:00:" + ":".join(f"{(index >> shift) & 0xFF:02x}" for shift in (16, 8, 0))


def enroll_sequential(base_url: str, n: int, *, with_ports: bool = True) -> float:
    """Enroll *n* fake-hardware nodes one request at a time; return seconds.

    Ironic has no bulk enrollment API, so each node is one ``POST /v1/nodes``
    (driver ``fake-hardware``, a name, properties cpus/memory_mb/local_gb/
    cpu_arch) followed, by default, by one ``POST /v1/ports`` for its NIC:
    two requests per node, which is what enrolling a machine with a MAC takes
    in Ironic.  Pass ``with_ports=False`` to time nodes only.  All requests
    go over one keep-alive connection (``benchmarks._http``, the client the
    portal's sequential enrolls use) with the latest API microversion.
    """
    client = KeepAliveClient(base_url, dict(API_HEADERS))
    try:
        started = time.perf_counter()
        for index in range(n):
            node = client.post(
                "/v1/nodes",
                {
                    "name": f"bench-{index:05d}",
                    "driver": "fake-hardware",
                    "properties": {
                        "cpus": 8,
                        "memory_mb": 16384,
                        "local_gb": 100,
                        "cpu_arch": "x86_64",
                    },
                },
            )
            node.raise_for_status()
            if with_ports:
                port = client.post(
                    "/v1/ports", {"node_uuid": node.json()["uuid"], "address": _mac(index)}
                )
                port.raise_for_status()
        return time.perf_counter() - started
    finally:
        client.close()


def list_detailed(base_url: str, repeats: int, *, warmup: int = 1) -> list[float]:
    """Time ``GET /v1/nodes?detail=True&limit=1000``; seconds per request.

    Client-measured wall time including reading and decoding the JSON body,
    over one ``requests.Session``; *warmup* untimed requests go first.
    """
    session = _session()
    try:
        timings: list[float] = []
        for round_index in range(warmup + repeats):
            started = time.perf_counter()
            response = session.get(f"{base_url}{LIST_PATH}", timeout=120)
            response.raise_for_status()
            response.json()
            elapsed = time.perf_counter() - started
            if round_index >= warmup:
                timings.append(elapsed)
        return timings
    finally:
        session.close()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of *values* (``pct`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


def _node_count(base_url: str) -> int:
    session = _session()
    try:
        response = session.get(f"{base_url}/v1/nodes?limit=1000", timeout=60)
        response.raise_for_status()
        return len(response.json()["nodes"])
    finally:
        session.close()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="nodes to enroll")
    parser.add_argument("--repeats", type=int, default=50, help="timed list requests")
    parser.add_argument("--port", type=int, default=0, help="API port (0: pick a free one)")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE, help="venv and workdir parent")
    parser.add_argument("--no-ports", action="store_true", help="enroll nodes without ports")
    return parser.parse_args(argv)


def _marker_version(venv_dir: Path) -> str:
    marker = venv_dir / MARKER_NAME
    return marker.read_text().strip() if marker.is_file() else "unknown"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    venv_dir = ensure_venv(args.base)
    version = _marker_version(venv_dir)
    port = args.port or free_port()
    with IronicServer(args.base / "ironic-work", port, venv_dir=venv_dir) as server:
        enroll_s = enroll_sequential(server.base_url, args.nodes, with_ports=not args.no_ports)
        what = "nodes only" if args.no_ports else "node + 1 port each"
        print(
            f"ironic {version}: enrolled {args.nodes} nodes ({what}) in {enroll_s:.1f} s"
            f" = {args.nodes / enroll_s:.1f} nodes/s"
        )
        listed = _node_count(server.base_url)
        timings = list_detailed(server.base_url, args.repeats)
        median_ms = statistics.median(timings) * 1000
        p99_ms = percentile(timings, 99) * 1000
        print(
            f"ironic {version}: GET {LIST_PATH} ({listed} nodes) x{len(timings)}:"
            f" median {median_ms:.0f} ms, p99 {p99_ms:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
