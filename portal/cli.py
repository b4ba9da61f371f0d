"""The ``bms`` command: run the portal, migrate the database, administer it."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from portal.core.config import Settings

if TYPE_CHECKING:
    from portal.services.context import Context


def _settings() -> Settings:
    return Settings.from_env()


def _context() -> Context:
    from portal.services.context import Context

    return Context.build(_settings())


@click.group()
def main() -> None:
    """BMS Portal: a multi-tenant bare-metal cloud."""


@main.group()
def db() -> None:
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from portal import migrate

    settings = _settings()
    migrate.upgrade(settings.database_url, revision)
    click.echo(f"database at revision {migrate.current(settings.database_url)}")
    if revision == "head":
        _ensure_provider_network()
        _seal_clear_secrets()


def _seal_clear_secrets() -> None:
    """Secrets stored in clear by older versions get encrypted (a no-op once done)."""
    from portal.services.nodes import reseal_secrets
    from portal.services.switches import reseal_credentials

    ctx = _context()
    count = reseal_secrets(ctx, rotate=False)
    if count:
        click.echo(f"encrypted {count} driver_info secrets stored in clear")
    count = reseal_credentials(ctx, rotate=False)
    if count:
        click.echo(f"encrypted {count} switch credentials stored in clear")


def _client_url(bind: str) -> str:
    """Where a client on this machine reaches a server bound to ``bind`` (host:port): a
    wildcard address is not one to connect to."""
    host, _, port = bind.rpartition(":")
    if host in ("0.0.0.0", "", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _ensure_provider_network() -> None:
    from portal.services import networks

    ctx = _context()
    with ctx.session() as s:
        net = networks.ensure_provider(ctx, s)
        subnet = net.subnets[0]
        pools = ", ".join(f"{p['start']}-{p['end']}" for p in subnet.allocation_pools)
        click.echo(
            f"provider network {net.name}: {subnet.cidr}, pool {pools}"
            " (BMS_PROVIDER_CIDR / BMS_PROVIDER_POOL)"
        )
        wanted = ctx.settings.provider_network_cidr, ctx.settings.provider_network_pool
        if wanted != (subnet.cidr, pools):
            click.echo(
                f"warning: BMS_PROVIDER_CIDR/POOL ask for {wanted[0]}, {wanted[1]}, but the "
                "network already exists with the values above; settings only apply to a "
                "new database",
                err=True,
            )


@db.command("current")
def db_current() -> None:
    """Show the current revision."""
    from portal import migrate

    click.echo(migrate.current(_settings().database_url) or "empty")


WORKER_CLASSES = ("gevent", "gthread")


@main.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True)
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes")
@click.option(
    "--worker-class",
    type=click.Choice(WORKER_CLASSES),
    default="gevent",
    show_default=True,
    help="gevent: a slow client costs a greenlet, not a thread; gthread: only behind a "
    "buffering reverse proxy (docs/reliability.md)",
)
def api(bind: str, workers: int, worker_class: str) -> None:
    """Serve the API with gunicorn."""
    os.execvp(sys.executable, _gunicorn_argv(bind, workers, worker_class))


def _gunicorn_argv(bind: str, workers: int, worker_class: str = "gevent") -> list[str]:
    settings = _settings()
    if worker_class == "gevent":
        # portal.httpworker: gevent's worker with a timeout on every client socket.
        worker = ["--worker-class", "portal.httpworker.GeventWorker"]
        worker += ["--worker-connections", "1000"]
    else:
        worker = ["--worker-class", "gthread", "--threads", "4"]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        str(workers),
        *worker,
        # The request head must arrive within this (gevent), and idle keep-alive ends.
        "--keep-alive",
        f"{settings.header_timeout:g}",
        "--access-logfile",
        "-",
        "--no-control-socket",
        "wsgi:app",
    ]


@main.command()
@click.option("--burst", is_flag=True, help="exit when the queue is empty")
@click.option(
    "--reconcile/--no-reconcile",
    default=True,
    show_default=True,
    help="also run the periodic reconciler",
)
@click.option(
    "--power-sync/--no-power-sync",
    default=True,
    show_default=True,
    help="also run the power sync loop (every BMS_POWER_SYNC_INTERVAL s; 0 turns it off)",
)
@click.option(
    "--mode",
    type=click.Choice(["inline", "fork"]),
    default=None,
    help="run jobs in the worker process, or fork one per job [default: BMS_WORKER_MODE or inline]",
)
def worker(burst: bool, reconcile: bool, power_sync: bool, mode: str | None) -> None:
    """Run an RQ worker (and the reconciler and power sync loop) for hardware jobs."""
    from workers.main import run_worker, start_power_sync, start_reconciler

    settings = _settings()
    if reconcile and not burst:
        start_reconciler(settings.reconcile_interval)
    if power_sync and not burst and settings.power_sync_interval > 0:
        start_power_sync(settings.power_sync_interval)
    ok = run_worker(burst=burst, mode=mode)
    sys.exit(0 if ok or burst else 1)


@main.command("power-sync")
def power_sync() -> None:
    """Run one power sync pass now and print its report."""
    from workers.power_sync import sync_pass

    click.echo(json.dumps(sync_pass().as_dict()))


@main.command()
def reconcile() -> None:
    """Run the reconciler once and print what it did."""
    from workers.jobs.reconcile import reconcile as run

    click.echo(json.dumps(run()))


@main.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True)
@click.option("--workers", "worker_count", default=2, show_default=True, help="RQ workers")
@click.option("--demo/--no-demo", default=True, show_default=True, help="seed demo data")
def up(bind: str, worker_count: int, demo: bool) -> None:
    """All in one: migrate, start Redis if none is configured, API, workers, demo data."""
    from portal import migrate
    from workers.redis_conn import ensure_url

    settings = _settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    _url, embedded = ensure_url(settings.redis_url, settings.var_dir)
    os.environ.setdefault("BMS_PUBLIC_URL", f"http://{bind}")
    settings = _settings()
    migrate.upgrade(settings.database_url)
    _seal_clear_secrets()
    from portal.supervisor import Supervisor

    log_dir = settings.var_dir / "log"
    log_dir.mkdir(exist_ok=True)
    # Children are restarted when they die, and never outlive bms up (portal/supervisor.py).
    sup = Supervisor(say=lambda msg: click.echo(f"bms up: {msg}", err=True))
    try:
        for i in range(worker_count):
            sup.add(
                f"worker-{i}",
                [sys.executable, "-m", "portal.cli", "worker"]
                + ([] if i == 0 else ["--no-reconcile", "--no-power-sync"]),
                log_dir / f"worker-{i}.log",
            )
        sup.add("api", _gunicorn_argv(bind, 2))
        _wait_http(f"http://{bind}/healthz")
        _up_ready(settings, bind, demo, log_dir)
        sup.run()
    finally:
        sup.stop()
        if embedded is not None:
            embedded.stop()


def _up_ready(settings: Settings, bind: str, demo: bool, log_dir: Path) -> None:
    _ensure_provider_network()
    if demo:
        _seed_demo(_context(), settings, bind)
    click.echo(f"BMS Portal is up on http://{bind}  (API docs: http://{bind}/v1/docs)")
    click.echo(f"logs: {log_dir}; Ctrl-C stops everything")


def _seed_demo(ctx: Context, settings: Settings, bind: str) -> None:
    from portal import demo

    tokens = demo.seed(ctx)
    env_file = settings.var_dir / "demo.env"
    if tokens is None:
        click.echo(f"demo data already present; tokens are in {env_file}")
        return
    env_file.write_text(
        f"export BMS={_client_url(bind)}\nexport ADMIN_TOKEN={tokens.admin}\n"
        f"export TENANT_TOKEN={tokens.tenant}\nexport FLAVOR={tokens.flavor}\n"
        f"export IMAGE={tokens.image}\n"
    )
    env_file.chmod(0o600)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and demo.provide_manageable(ctx) < 4:
        time.sleep(0.5)
    click.echo(
        f"demo seeded: admin token {tokens.admin}\n             tenant token {tokens.tenant}"
    )
    click.echo(f"             (also in {env_file}: `. {env_file}`)")


def _wait_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise click.ClickException(f"API did not answer at {url}")


@main.command("demo")
def demo_cmd() -> None:
    """Seed demo data into a running installation (idempotent)."""
    settings = _settings()
    _seed_demo(_context(), settings, settings.public_url.removeprefix("http://"))


@main.group()
def node() -> None:
    """Node administration."""


@node.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--atomic", is_flag=True, help="all rows or none")
def node_import(file: Path, atomic: bool) -> None:
    """Enroll nodes from a JSON or CSV FILE; prints a result per row."""
    from portal.api.nodes import importer
    from portal.core.errors import DomainError
    from portal.services.identity import SYSTEM

    ctx = _context()
    kind = "text/csv" if file.suffix.lower() == ".csv" else "application/json"
    try:
        rows = importer.parse(file.read_bytes(), kind, max_rows=ctx.settings.max_import_rows)
        with ctx.session() as s:
            result = importer.import_rows(ctx, s, rows, SYSTEM, atomic=atomic)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(json.dumps(result, indent=2))
    if result["failed"]:
        sys.exit(1)


@main.group()
def admin() -> None:
    """Projects, users and tokens."""


@admin.command("create-project")
@click.argument("name")
def create_project(name: str) -> None:
    from portal.services import identity

    ctx = _context()
    with ctx.session() as s:
        click.echo(identity.create_project(ctx, s, name, None).id)


@admin.command("create-user")
@click.argument("name")
@click.argument("project")
@click.option("--role", default="member", type=click.Choice(["admin", "member", "reader"]))
def create_user(name: str, project: str, role: str) -> None:
    """Create a user and print a fresh API token for it."""
    from sqlalchemy import or_, select

    from portal.services import identity
    from tenants.models import Project

    ctx = _context()
    with ctx.session() as s:
        proj = s.scalar(select(Project).where(or_(Project.id == project, Project.name == project)))
        if proj is None:
            raise click.ClickException(f"project '{project}' not found")
        user = identity.create_user(s, name, proj, role)
        _, token = identity.create_token(s, user, "created by bms admin create-user", None)
    click.echo(token)


@main.group()
def secrets() -> None:
    """Encryption keys for secrets at rest."""


@secrets.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret (node driver_info, switch credentials) with the first
    key of BMS_SECRET_KEYS (and encrypt any clear text left from before encryption covered it)."""
    from portal.services.nodes import reseal_secrets
    from portal.services.switches import reseal_credentials

    ctx = _context()
    count = reseal_secrets(ctx, rotate=True) + reseal_credentials(ctx, rotate=True)
    click.echo(f"re-encrypted {count} secrets")


@secrets.command("seal")
def secrets_seal() -> None:
    """Encrypt secrets still stored in clear (from before 0.x); run by ``bms db upgrade``."""
    from portal.services.nodes import reseal_secrets
    from portal.services.switches import reseal_credentials

    ctx = _context()
    count = reseal_secrets(ctx, rotate=False) + reseal_credentials(ctx, rotate=False)
    click.echo(f"encrypted {count} secrets stored in clear")


def _register_netboot_commands() -> None:
    """``bms lab …`` (the QEMU lab and its test image) and ``bms ramdisk build``: commands
    owned by ``netboot``, registered here where the entry points are wired."""
    from netboot.lab.cli import lab
    from netboot.ramdisk.cli import ramdisk
    from netboot.testimage.cli import lab_image

    lab.add_command(lab_image)  # bms lab image
    main.add_command(lab)
    main.add_command(ramdisk)  # bms ramdisk build


_register_netboot_commands()

if __name__ == "__main__":
    main()
