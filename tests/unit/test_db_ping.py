"""Pooled PostgreSQL connections are pinged after sitting idle, not on every checkout."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from portal.core import db as dbmod


@pytest.fixture
def pg_url(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("pre-ping is configured for PostgreSQL only")
    return db_url


def _pings(engine: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = engine.dialect.do_ping

    def counted(conn: Any) -> bool:
        calls.append(1)
        return bool(real(conn))

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return calls


def test_a_connection_used_just_now_is_not_pinged(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = dbmod.make_engine(pg_url, pool_size=1)
    pings = _pings(engine, monkeypatch)
    try:
        for _ in range(3):
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert pings == []
        monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_S", 0.0)  # now every checkout is "idle"
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert pings == [1]
    finally:
        engine.dispose()


def test_an_idle_connection_that_died_is_replaced_unseen(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = dbmod.make_engine(pg_url, pool_size=1)
    try:
        with engine.connect() as conn:
            old = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        killer = dbmod.make_engine(pg_url)
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old})
            conn.commit()
        killer.dispose()
        monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_S", 0.0)
        with engine.connect() as conn:  # the ping finds it dead: a new connection, no error
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != old
    finally:
        engine.dispose()
