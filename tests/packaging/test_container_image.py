"""The container image (docker/Dockerfile, docker/compose.yaml), proven without Docker.

The build machines and CI have no Docker daemon and reach no container registry, so the image
is never built there. This is the closest proof: copy exactly what the Dockerfile COPYs,
install it non-editably into a fresh virtualenv (its ``pip install /src``), then, from a
directory outside any source tree and with the image's environment, run what compose runs:
``bms db upgrade``, ``bms api`` until its healthcheck passes, ``bms worker``. Anything the
image would lack (a module, the migrations, package data, wsgi.py) fails here.

Differences left: the dependencies come from the test virtualenv (through a .pth file)
instead of being resolved by pip, and Python is the host's, not python:3.11-slim.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import site
import subprocess
import time
import tomllib
import uuid
import venv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from packaging.requirements import Requirement
from redis import Redis
from rq import Queue, Worker
from sqlalchemy import create_engine, text

from portal.core.config import Settings
from tests.conftest import PG_DEFAULT, _postgres_url
from tests.emulators._process import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


# --- What the Dockerfile and compose.yaml say (read from the files, so the test follows them)


def dockerfile_instructions(name: str) -> list[list[str]]:
    """The arguments of every ``name`` instruction (COPY, ENV...), continuations joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [shlex.split(line)[1:] for line in joined.splitlines() if line.startswith(f"{name} ")]


def copied_paths() -> list[str]:
    """The repository paths the Dockerfile COPYs into its build directory (same relative paths)."""
    paths = []
    for args in dockerfile_instructions("COPY"):
        *sources, dest = [a for a in args if not a.startswith("--")]
        for src in sources:
            assert dest in ("./", f"./{src}"), f"COPY {src} {dest}: not the layout tested here"
            paths.append(src)
    return paths


def compose_commands() -> dict[str, list[str]]:
    """Each service's ``command:`` (a JSON-compatible flow list), by service name."""
    commands: dict[str, list[str]] = {}
    service = ""
    for line in COMPOSE.read_text().splitlines():
        if m := re.fullmatch(r"  ([\w-]+):\s*", line):
            service = m[1]
        elif m := re.fullmatch(r"\s+command:\s*(\[.*\])\s*", line):
            commands[service] = json.loads(m[1])
    return commands


def compose_admin_commands() -> list[list[str]]:
    """The ``bms admin`` commands compose.yaml's header tells the operator to run first."""
    return [
        shlex.split(m[1]) for m in re.finditer(r"run --rm api (bms admin .*)", COMPOSE.read_text())
    ]


def compose_env() -> dict[str, str]:
    """The ``x-bms-env`` block, ``${VAR:-default}`` replaced by its default and required
    ``${VAR:?...}`` by a placeholder."""
    lines = COMPOSE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("x-bms-env:"))
    env = {}
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        if m := re.fullmatch(r"  ([A-Z][A-Z0-9_]*):\s*(.*)", line):
            value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", m[2])
            env[m[1]] = re.sub(r"\$\{\w+:\?[^}]*\}", "set-by-the-operator", value)
    return env


# --- The image, installed into a virtualenv


@dataclass(frozen=True)
class Image:
    src: Path  # the copy of what the Dockerfile COPYs (to /src)
    bin: Path  # the virtualenv's scripts (bms)
    site_packages: Path
    workdir: Path  # where commands run: neither the checkout nor the copy (the image's empty /app)
    env: dict[str, str]  # the Dockerfile's ENV (paths under a fake root) on the host's PATH


def _checked(argv: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")  # stands for the container's /
    src, env_dir, workdir = root / "src", root / "venv", root / "workdir"
    for rel in copied_paths():
        path = REPO / rel
        if path.is_dir():
            shutil.copytree(path, src / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / rel)
    workdir.mkdir()

    # No pip of its own: pip, setuptools and the project's dependencies are the test
    # virtualenv's, seen through a .pth file, so nothing is downloaded.
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(
        _checked(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], workdir
        ).strip()
    )
    (purelib / "test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --no-build-isolation builds with that setuptools: it must be one the project accepts
    # (the test extra asks for it; setuptools >= 70.1 makes wheels without `wheel`).
    for req in map(Requirement, PYPROJECT["build-system"]["requires"]):
        if req.name == "setuptools":
            have = metadata.version("setuptools")
            assert req.specifier.contains(have), f"setuptools {have} installed, {req} needed"
    _checked(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-cache-dir", str(src)],
        workdir,
    )  # fmt: skip

    image_env = {}
    for args in dockerfile_instructions("ENV"):
        for arg in args:
            key, _, value = arg.partition("=")
            image_env[key] = str(root / value.lstrip("/")) if value.startswith("/") else value
            if value.startswith("/"):
                Path(image_env[key]).mkdir(parents=True)  # as the Dockerfile's mkdir -p
    assert {"BMS_VAR_DIR", "BMS_IMAGE_DIR"} <= image_env.keys()
    # Nothing from the test run may leak in: no settings, no path to a source tree.
    host = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BMS_", "PYTHON", "VIRTUAL_ENV"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env = {**host, **image_env, "PATH": f"{env_dir / 'bin'}{os.pathsep}{host['PATH']}"}
    return Image(src, env_dir / "bin", purelib, workdir, env)


def test_image_installs_every_file_of_what_it_copies(image: Image) -> None:
    """Every module and data file of the copied packages lands in site-packages (a file
    missing from pyproject's package-data, or a package without __init__.py, would not)."""
    missing = []
    for rel in copied_paths():
        path = image.src / rel
        if path.is_dir():
            files = [f.relative_to(image.src) for f in path.rglob("*") if f.is_file()]
        else:
            files = [Path(rel)] if rel.endswith(".py") else []  # pyproject.toml, README: metadata
        missing += [str(f) for f in files if not (image.site_packages / f).is_file()]
    assert not missing, f"copied into the image but not installed: {missing}"
    # And, file by file, what pyproject's package-data names (netboot's ramdisk scripts...).
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        folder = package.replace(".", "/")
        for pattern in patterns:
            for f in (image.src / folder).glob(pattern):
                installed = image.site_packages / f.relative_to(image.src)
                assert installed.is_file(), f"package-data {package}: {pattern}: {installed}"


def test_installed_package_is_what_runs(image: Image) -> None:
    probe = (
        "import importlib.util, json;"
        "print(json.dumps({m: getattr(importlib.util.find_spec(m), 'origin', None) for m in"
        " ['portal', 'tenants', 'scheduler', 'workers', 'netboot', 'migrations', 'wsgi']}))"
    )
    origins = json.loads(
        _checked([str(image.bin / "python"), "-c", probe], image.workdir, image.env)
    )
    for module, origin in origins.items():
        assert origin and Path(origin).is_relative_to(image.site_packages), f"{module}: {origin}"


def test_compose_environment_is_read_by_settings() -> None:
    """A variable compose or the Dockerfile sets that the settings never read is a typo or a
    leftover: it would configure nothing."""
    dockerfile_bms = {
        arg.partition("=")[0]: arg.partition("=")[2]
        for args in dockerfile_instructions("ENV")
        for arg in args
        if arg.startswith("BMS_")
    }
    env = {**compose_env(), **dockerfile_bms}
    assert "DATABASE_URL" in env
    default = Settings.from_env({})
    ignored = [name for name, value in env.items() if Settings.from_env({name: value}) == default]
    assert not ignored, f"set for the containers but not read by Settings.from_env: {ignored}"


def test_every_image_command_is_accepted(image: Image) -> None:
    commands = [c for c in compose_commands().values() if c[0] == "bms"]
    commands += [
        json.loads(line[4:])
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("CMD [")
    ]
    assert {c[1] for c in commands} >= {"db", "api", "worker"}, commands
    for argv in commands:
        assert argv[0] == "bms", argv
        _checked([str(image.bin / "bms"), *argv[1:], "--help"], image.workdir, image.env)


# --- Running it as compose does


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bms.sqlite'}"
        return
    # A database of its own (the helper appends the pid): the suite's is shared by its tests.
    base, _, name = os.environ.get("BMS_TEST_POSTGRES_URL", PG_DEFAULT).rpartition("/")
    monkeypatch.setenv("BMS_TEST_POSTGRES_URL", f"{base}/{name}_image_{uuid.uuid4().hex[:8]}")
    url = _postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not reachable (set BMS_TEST_POSTGRES_URL)")
    yield url
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)'))
    admin.dispose()


def _until(pred: Callable[[], Any], proc: ManagedProcess, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert proc.running, f"{what}: exited {proc.returncode}; log:\n{proc.log_tail()}"
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s; log:\n{proc.log_tail()}"
        time.sleep(0.2)


@contextlib.contextmanager
def _service(
    image: Image, argv: list[str], env: Mapping[str, str], log: Path
) -> Iterator[ManagedProcess]:
    """``argv`` running in its own process group; stopped as ``docker stop`` does: SIGTERM,
    then SIGKILL if still up after a grace period (and that counts as a failure)."""
    proc = ManagedProcess(
        [str(image.bin / argv[0]), *argv[1:]], log_path=log, env=env, cwd=image.workdir
    )
    proc.start()
    try:
        yield proc
    finally:
        stopped = proc.terminate(grace=20)
    assert stopped, f"{shlex.join(argv)} ignored SIGTERM; log:\n{proc.log_tail()}"


def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    i = argv.index(option)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_compose_services_run_from_the_installed_package(
    image: Image, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    commands = compose_commands()
    env = {
        **image.env,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BMS_SECRET_KEYS": Fernet.generate_key().decode(),
        "BMS_PUBLIC_URL": "http://127.0.0.1:8000",
        "BMS_QUEUE": f"image-{uuid.uuid4().hex[:12]}",  # takes no other test's jobs
    }

    # migrate: the Alembic scripts must be found inside the installed package.
    out = _checked([str(image.bin / "bms"), *commands["migrate"][1:]], image.workdir, env)
    assert re.search(r"database at revision \w+", out) and "revision None" not in out, out

    # The first admin, as compose.yaml's header says (`run --rm api bms admin ...`).
    admin = compose_admin_commands()
    assert admin, "compose.yaml no longer says how to create the first admin"
    for argv in admin:
        token = _checked([str(image.bin / "bms"), *argv[1:]], image.workdir, env).strip()

    # api, on a free port with two gunicorn workers (two CPUs here), until the healthcheck passes.
    port = free_port()
    argv = _with_option(
        _with_option(commands["api"], "--bind", f"127.0.0.1:{port}"), "--workers", "2"
    )
    base = f"http://127.0.0.1:{port}"
    with _service(image, argv, env, tmp_path / "api.log") as api:
        _until(lambda: _healthy(base), api, 60, "api /healthz")
        spec = requests.get(f"{base}/v1/openapi.json", timeout=5)
        assert spec.status_code == 200 and "/v1/nodes" in spec.json()["paths"], spec.text[:500]
        nodes = requests.get(f"{base}/v1/nodes", headers={"X-Auth-Token": token}, timeout=5)
        assert nodes.status_code == 200, nodes.text  # the token was read from the database

    # worker: registers with Redis on its queue and keeps running.
    with Redis.from_url(redis_url) as redis:
        queue = Queue(env["BMS_QUEUE"], connection=redis)
        with _service(image, commands["worker"], env, tmp_path / "worker.log") as worker:
            _until(lambda: Worker.all(connection=redis, queue=queue), worker, 60, "worker up")
            time.sleep(2)
            assert worker.running, f"worker exited {worker.returncode}:\n{worker.log_tail()}"
