"""Alembic environment: the URL comes from the caller (``bms db upgrade``) or DATABASE_URL."""

from __future__ import annotations

from alembic import context

import tenants.models  # noqa: F401  (registers the identity tables on the shared metadata)
from portal.core import models  # noqa: F401
from portal.core.config import Settings
from portal.core.db import Base, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def run_offline() -> None:
    context.configure(
        url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # A batch rebuild drops and renames the table: with foreign keys enforced,
            # the DROP would first delete its rows, cascading into every child table
            # (a network's subnets and allocations). Off for the migration (only outside a
            # transaction does the pragma take), checked before the commit instead.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        # SQLite cannot ALTER most things: batch mode rebuilds tables instead.
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"migration left dangling foreign keys: {broken[:10]}")
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
