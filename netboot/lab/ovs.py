"""A real Open vSwitch for tests and the lab, in a scratch directory (userspace datapath).

This kernel has no 802.1Q devices and no bridge VLAN filtering, but OVS's userspace
datapath (``datapath_type=netdev``) gives real VLAN isolation between veth/tap ports::

    with OvsLab(tmp_path / "ovs") as ovs:       # optionally OvsLab(dir, netns="sw1")
        ovs.add_bridge("br0")
        ovs.vsctl("add-port", "br0", "p1", "tag=100")

ovsdb-server and ovs-vswitchd run with ``OVS_RUNDIR``/``OVS_LOGDIR``/``OVS_DBDIR`` pointing at
the scratch directory (OVS_RUNDIR must be set before ovsdb-server starts, or it fails on its
control socket). ``stop()`` is idempotent and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from netboot.lab import procs

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
BINARIES = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl")


def missing() -> list[str]:
    """What this machine lacks to run :class:`OvsLab` (empty: it can)."""
    gone = [b for b in BINARIES if shutil.which(b) is None]
    if not SCHEMA.exists():
        gone.append(str(SCHEMA))
    if os.geteuid() != 0:
        gone.append("root")
    return gone


class OvsLab:
    def __init__(self, directory: Path, netns: str | None = None) -> None:
        self.dir = Path(directory).resolve()
        self.netns = netns
        self.pids: dict[str, int] = {}
        self.bridges: list[str] = []

    @property
    def db_sock(self) -> Path:
        return self.dir / "db.sock"

    @property
    def env(self) -> dict[str, str]:
        d = str(self.dir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d}

    def _argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def _run(self, argv: list[str], timeout: float = 30.0) -> str:
        proc = subprocess.run(
            self._argv(argv), capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def start(self) -> OvsLab:
        self.dir.mkdir(parents=True, exist_ok=True)
        db = self.dir / "conf.db"
        if not db.exists():
            self._run(["ovsdb-tool", "create", str(db), str(SCHEMA)])
        self._run(
            [
                "ovsdb-server",
                str(db),
                f"--remote=punix:{self.db_sock}",
                f"--pidfile={self.dir / 'ovsdb.pid'}",
                f"--log-file={self.dir / 'ovsdb.log'}",
                "--detach",
            ]
        )
        self.pids["ovsdb-server"] = self._pid("ovsdb.pid")
        self.vsctl("--no-wait", "init")
        self._run(
            [
                "ovs-vswitchd",
                f"unix:{self.db_sock}",
                f"--pidfile={self.dir / 'vswitchd.pid'}",
                f"--log-file={self.dir / 'vswitchd.log'}",
                "--detach",
            ]
        )
        self.pids["ovs-vswitchd"] = self._pid("vswitchd.pid")
        return self

    def _pid(self, name: str) -> int:
        path = self.dir / name

        def read() -> str | None:
            text = path.read_text().strip() if path.exists() else ""
            return text if text.isdigit() else None

        return int(procs.poll_until(read, timeout=10, what=name))

    def vsctl(self, *args: str) -> str:
        """``ovs-vsctl --db=unix:DIR/db.sock ARGS``; its stdout."""
        return self._run(["ovs-vsctl", "--timeout=20", f"--db=unix:{self.db_sock}", *args])

    def ofctl(self, *args: str) -> str:
        return self._run(["ovs-ofctl", *args])

    def add_bridge(self, name: str) -> None:
        self.vsctl(
            "--may-exist", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev"
        )
        if name not in self.bridges:
            self.bridges.append(name)

    def mgmt(self, bridge: str) -> str:
        """The OpenFlow target of ``bridge`` for ovs-ofctl."""
        return f"unix:{self.dir / bridge}.mgmt"

    def stop(self) -> None:
        """Stop both daemons (idempotent); marker = this scratch directory. The bridges go
        first: vswitchd removes their devices (the userspace datapath's taps) only then."""
        for bridge in self.bridges:
            # If the daemons are gone already, so are the bridges' devices.
            with contextlib.suppress(OSError, RuntimeError, subprocess.SubprocessError):
                self.vsctl("--if-exists", "del-br", bridge)
        self.bridges.clear()
        for name, pidfile in (("ovs-vswitchd", "vswitchd.pid"), ("ovsdb-server", "ovsdb.pid")):
            pid = self.pids.pop(name, None)
            if pid is None and (self.dir / pidfile).exists():
                text = (self.dir / pidfile).read_text().strip()
                pid = int(text) if text.isdigit() else None
            procs.kill(pid, str(self.dir), term_first=2.0)

    def __enter__(self) -> OvsLab:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
