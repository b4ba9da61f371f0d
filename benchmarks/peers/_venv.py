"""What every reference peer needs: its own virtualenv, a free port, a log's last lines."""

from __future__ import annotations

import shutil
import socket
import subprocess
import venv
from pathlib import Path


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def rebuild_venv(venv_dir: Path) -> list[str]:
    """Create ``venv_dir`` from scratch with a current pip; return the pip install command
    (``-qq``: errors only, pip's index notices would otherwise flood stderr)."""
    if venv_dir.exists():
        shutil.rmtree(venv_dir)
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    pip = [str(venv_python(venv_dir)), "-m", "pip", "install", "-qq"]
    subprocess.run([*pip, "--upgrade", "pip", "setuptools", "wheel"], check=True)
    return pip


def python_runs(venv_dir: Path, code: str, timeout: float = 60) -> str | None:
    """``code``'s stdout when the venv's interpreter runs it cleanly, else None."""
    try:
        result = subprocess.run(
            [str(venv_python(venv_dir)), "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])
