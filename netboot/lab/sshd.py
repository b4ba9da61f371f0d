"""A real OpenSSH server for tests and the lab (``/usr/sbin/sshd -D -f CONFIG``), on
127.0.0.1:PORT or inside a network namespace, with its own host key and an authorized key
(both made with ``ssh-keygen`` in a scratch directory), so drivers log in as root with a key.

Password login would need a system user with a known password (sshd checks the system's
password database): this helper creates none and changes no password, so password
authentication is enabled but only wrong passwords can be tested against it.

``logins()`` counts accepted logins from sshd's log (``LogLevel VERBOSE``): tests use it to
prove that a batch used one SSH session.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

from netboot.lab import procs

SSHD = "/usr/sbin/sshd"


def missing() -> list[str]:
    gone = [b for b in (SSHD, "ssh-keygen") if shutil.which(b) is None]
    if os.geteuid() != 0:
        gone.append("root")
    return gone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SshdLab:
    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        address: str = "127.0.0.1",
        netns: str | None = None,
        user: str = "root",
    ) -> None:
        self.dir = Path(directory).resolve()
        self.port = port or free_port()
        self.address = address
        self.netns = netns
        self.user = user
        self.pid: int | None = None

    @property
    def client_key_path(self) -> Path:
        return self.dir / "client_key"

    @property
    def client_key(self) -> str:
        """The authorized private key (OpenSSH text), for the drivers' ``private_key``."""
        return self.client_key_path.read_text()

    @property
    def log_path(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file naming this server's host key."""
        return self.dir / "known_hosts"

    def _keygen(self, path: Path) -> None:
        if not path.exists():
            procs.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)])

    def _config(self) -> Path:
        conf = self.dir / "sshd_config"
        conf.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{self.port}",
                    f"HostKey {self.dir / 'host_key'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin yes",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication yes",
                    "KbdInteractiveAuthentication no",
                    "LogLevel VERBOSE",
                    "MaxStartups 100",
                    "MaxSessions 100",
                    "UseDNS no",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        return conf

    def start(self) -> SshdLab:
        self.dir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self._keygen(self.dir / "host_key")
        self._keygen(self.client_key_path)
        pub = (self.dir / "client_key.pub").read_text()
        (self.dir / "authorized_keys").write_text(pub)
        host_pub = " ".join((self.dir / "host_key.pub").read_text().split()[:2])
        host = f"[{self.address}]:{self.port}" if self.port != 22 else self.address
        self.known_hosts.write_text(f"{host} {host_pub}\n")
        conf = self._config()
        procs.run([SSHD, "-t", "-f", str(conf)])  # refuse a bad config before starting
        argv = [SSHD, "-D", "-f", str(conf), "-E", str(self.log_path)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.pid = procs.spawn(argv, log_path=self.dir / "sshd.out")
        procs.poll_until(self._listening, timeout=10, what=f"sshd on {self.address}:{self.port}")
        return self

    def _listening(self) -> bool:
        if self.netns:
            out = subprocess.run(
                ["ip", "netns", "exec", self.netns, "ss", "-ltn"], capture_output=True, text=True
            ).stdout
            return f":{self.port} " in out
        with contextlib.suppress(OSError), socket.create_connection((self.address, self.port), 1):
            return True
        return False

    def logins(self) -> int:
        """Accepted logins so far (from sshd's log)."""
        if not self.log_path.exists():
            return 0
        return len(re.findall(r"Accepted \w+ for ", self.log_path.read_text(errors="replace")))

    def stop(self) -> None:
        """Stop sshd and every session it forked (idempotent; marker: this config path)."""
        marker = str(self.dir / "sshd_config")
        procs.kill(self.pid, marker, term_first=2.0)
        self.pid = None
        with contextlib.suppress(TimeoutError):
            procs.kill_all(marker, timeout=5)

    def __enter__(self) -> SshdLab:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
