"""Alembic migrations (``bms db upgrade``). One linear history for SQLite and PostgreSQL."""

from pathlib import Path

SCRIPT_LOCATION = str(Path(__file__).parent)
