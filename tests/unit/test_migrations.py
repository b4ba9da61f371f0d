"""The Alembic migrations build exactly the schema the models declare, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.core.db import Base


def test_models_and_migrations_agree(ctx: Any) -> None:
    import portal.core.models  # noqa: F401
    import tenants.models  # noqa: F401

    with ctx.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # events.txid's index exists on PostgreSQL only (migration 0002), by design
    diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name == "ix_events_txid")]
    assert diff == []
