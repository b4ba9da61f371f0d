"""Engine and session factory; the only place that knows which database is behind."""

from __future__ import annotations

import sqlite3
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Insert,
    MetaData,
    String,
    Table,
    TypeDecorator,
    bindparam,
    create_engine,
    event,
    exc,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    make_transient_to_detached,
    mapped_column,
    sessionmaker,
)
from sqlalchemy.sql import FromClause

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware timestamps on both backends (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[Any]: JSON,
        datetime: UTCDateTime,
    }


class UUIDMixin:
    """Public identifier: a uuid string; the integer primary key never leaves the database."""

    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(default=None, onupdate=utcnow)


# How long a SQLite writer waits for the write lock before "database is locked".
SQLITE_BUSY_WAIT_S = 30.0


def _cooperative() -> bool:
    """Under gevent (``bms api``'s workers, portal.httpworker), SQLite's own wait for a lock
    runs in C and would freeze every greenlet of the process (the lock's holder included,
    if it is one of them), so BEGIN IMMEDIATE is retried in Python with a sleep that yields.
    Read from the process's monkey-patching, not from a flag someone must remember to set."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("time"))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout makes concurrent
    # writers queue instead of failing with "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    busy_ms = 10 if _cooperative() else int(SQLITE_BUSY_WAIT_S * 1000)
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin_deferred(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def _sqlite_begin(conn: Any) -> None:
    # A deferred transaction that reads and then writes fails at once (SQLITE_BUSY_SNAPSHOT)
    # when another process committed in between. Taking the write lock at BEGIN makes
    # concurrent writers queue on busy_timeout instead: SQLite serializes writers anyway.
    if not _cooperative():
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    deadline, pause = time.monotonic() + SQLITE_BUSY_WAIT_S, 0.002
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except exc.OperationalError as error:
            if "locked" not in str(error.orig) or time.monotonic() > deadline:
                raise
        time.sleep(pause)  # gevent's sleep: the lock's holder and the rest run meanwhile
        pause = min(pause * 2, 0.05)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# A pooled connection idle for longer than this is pinged before use (a lost connection is
# replaced, invisibly to the caller); one used more recently is handed out as it is.
PING_AFTER_IDLE_S = 5.0


def _idle_since(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    """Pre-ping only connections that sat in the pool for a while.

    ``pool_pre_ping`` costs a round trip on every checkout; a connection that dies while
    idle (server restart, fail-over, a firewall's idle timeout) is what it protects
    against, and those sit idle. A connection checked in moments ago is used without one:
    if it died in between, its statement fails, SQLAlchemy invalidates the pool, and the
    caller's retry (the job's) gets a fresh connection.
    """

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # just connected, or just used
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as err:
            # the pool discards this connection and checks out another (a new one)
            raise exc.DisconnectionError(str(err)) from err

    return checkout


def make_engine(url: str, read_only: bool = False, **kwargs: Any) -> Engine:
    """An engine for ``url``. On SQLite, ``read_only`` engines begin deferred transactions,
    so readers never queue behind writers (WAL gives them a consistent snapshot)."""
    # JSON columns (properties, capabilities, payloads...) are decoded on every list: orjson
    # does it several times faster than the standard library.
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_deferred if read_only else _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", 10)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkin", _idle_since)
        event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


# How insert_now fills each column of a mapped class: (attribute, column, kind, default).
_ColumnPlan = tuple[tuple[str, str, str, Any], ...]
_COLUMN_PLANS: dict[Any, _ColumnPlan] = {}
# One statement per shape of a combined insert (tables and columns of its rows), PostgreSQL.
_COMBINED_INSERTS: dict[tuple[Any, ...], Insert] = {}
_MAX_COMBINED_ROWS = 16


def _column_plan(mapper: Any) -> _ColumnPlan:
    plan = _COLUMN_PLANS.get(mapper)
    if plan is None:
        steps = []
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if column.default is not None and column.default.is_scalar:
                steps.append((prop.key, column.key, "scalar", column.default.arg))
            elif column.default is not None and column.default.is_callable:
                steps.append((prop.key, column.key, "callable", column.default.arg))
            elif column.server_default is not None or (
                column.primary_key and column.autoincrement is True
            ):
                steps.append((prop.key, column.key, "server", None))  # the database fills it
            else:
                steps.append((prop.key, column.key, "null", None))
        plan = _COLUMN_PLANS[mapper] = tuple(steps)
    return plan


def _row_of(obj: Base) -> tuple[Table, dict[str, Any]]:
    state = inspect(obj)
    values = state.dict
    row: dict[str, Any] = {}
    for key, column, kind, default in _column_plan(state.mapper):
        if key in values:
            value = values[key]
        elif kind == "server":
            continue
        elif kind == "scalar":
            value = default
        elif kind == "callable":
            value = default(None)
        else:
            value = None
        row[column] = value
        values[key] = value
    return cast(Table, state.mapper.local_table), row


def insert_now(session: Session, objs: Sequence[Base]) -> None:
    """INSERT new ORM objects right away with plain Core statements, instead of the unit
    of work at the next flush: no change tracking, no RETURNING of keys the client chose,
    a fraction of the CPU. Column defaults are computed here and set on the objects, so
    they hold what their rows hold; an object whose key the client knows is then
    attached to ``session`` as if loaded from it. One whose key the database assigns (an
    event's id) is written and left out of the session.

    Rows go in table by table, in the order given (several rows of one table in one
    executemany). On PostgreSQL, rows of several tables go in **one** statement instead,
    one round trip rather than one per table (see ``_insert_combined``).
    """
    rows: dict[Table, list[dict[str, Any]]] = {}
    for obj in objs:
        table, row = _row_of(obj)
        rows.setdefault(table, []).append(row)
    if len(rows) > 1 and _combinable(rows) and session.get_bind().dialect.name == "postgresql":
        _insert_combined(session, [(t, row) for t, values in rows.items() for row in values])
    else:
        for table, values in rows.items():
            session.execute(table.insert(), values if len(values) > 1 else values[0])
    for obj in objs:
        state = inspect(obj)
        if None not in state.mapper.primary_key_from_instance(obj):
            make_transient_to_detached(obj)
            session.add(obj)


def _combinable(rows: dict[Table, list[dict[str, Any]]]) -> bool:
    """Rows whose key the database assigns (events) must keep their order, which separate
    INSERTs in one statement do not promise: at most one such row per table. And few
    rows in all: one statement (and one cached shape) per row count is meant for a node
    with its handful of ports, not for a batch."""
    return sum(map(len, rows.values())) <= _MAX_COMBINED_ROWS and all(
        len(values) == 1 or all(c.key in values[0] for c in table.primary_key.columns)
        for table, values in rows.items()
    )


def _insert_combined(session: Session, rows: list[tuple[Table, dict[str, Any]]]) -> None:
    """Several rows, of several tables, in one statement: each row but the last is the
    INSERT of a data-modifying CTE, the last is the main INSERT. PostgreSQL checks
    foreign keys at the end of the statement, so a child row may sit beside its parent.

    One single-row INSERT per row (a multi-row VALUES is not cacheable by SQLAlchemy); the
    statement is built once per shape (tables and columns, in order), parameters named
    ``r<i>_<column>``, so it is compiled once too.
    """
    shape = tuple((table.name, *row) for table, row in rows)
    stmt = _COMBINED_INSERTS.get(shape)
    if stmt is None:
        inserts = [
            table.insert().values(
                {column: bindparam(f"r{i}_{column}", type_=table.c[column].type) for column in row}
            )
            for i, (table, row) in enumerate(rows)
        ]
        ctes = [ins.cte(f"row_{i}") for i, ins in enumerate(inserts[:-1])]
        stmt = _COMBINED_INSERTS[shape] = inserts[-1].add_cte(*ctes)
    params = {
        f"r{i}_{column}": value for i, (_, row) in enumerate(rows) for column, value in row.items()
    }
    session.execute(stmt, params)


def one_of(session: Session, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN (values)``. On PostgreSQL as ``column IN (SELECT unnest(:values))``, one
    array parameter: the same SQL for any number of values, so psycopg keeps it in its
    query cache and SQLAlchemy renders nothing per call, where an IN of 1,000 parameters
    was rendered, split and sent as new SQL every time (~3 ms of a 1,000-node list).

    Not ``column = ANY(:values)``: once psycopg prepares the statement, PostgreSQL may
    pick a generic plan that scans the table and searches the array linearly for every
    row (seen: a 1,000-node list at 80 ms instead of 20). A set-returning subquery is
    planned as a join, which stays an index lookup per value."""
    if session.get_bind().dialect.name == "postgresql":
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return cast("ColumnElement[bool]", column.in_(select(func.unnest(array))))
    return cast("ColumnElement[bool]", column.in_(values))


_INSERT_OR_SKIP: dict[tuple[str, str], Insert] = {}


def insert_unless_taken(session: Session, table: FromClause, values: dict[str, Any]) -> bool:
    """INSERT one row of ``table`` unless a unique key already holds its values; True if
    the row went in.

    ``INSERT ... ON CONFLICT DO NOTHING`` (both backends): a clash with a concurrent
    transaction waits for it to end, as a plain INSERT would, but is an answer rather than
    an error, so the caller needs no savepoint (two round trips) to go on after it. The
    statement is built once per backend and table.
    """
    dialect = session.get_bind().dialect.name
    key = (dialect, cast(Table, table).name)
    stmt = _INSERT_OR_SKIP.get(key)
    if stmt is None:
        build = postgresql.insert if dialect == "postgresql" else sqlite.insert
        target = cast(Table, table)
        stmt = _INSERT_OR_SKIP[key] = (
            build(target).on_conflict_do_nothing().returning(*target.primary_key.columns)
        )
    # (the driver's rowcount is not reliable for this statement: ask for the key back)
    return session.execute(stmt, values).first() is not None


class Database:
    """An engine plus its session factory. One per process, created at start-up."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        if self.engine.dialect.name == "sqlite":
            self.read_engine = make_engine(url, read_only=True, **engine_kwargs)
        else:
            self.read_engine = self.engine
        # For requests that only read (API GETs, token checks).
        self.read_sessionmaker = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any error."""
        with self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        with self.read_sessionmaker() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()

    def purge_freed_pages(self) -> None:
        """SQLite keeps the old content of updated rows in freed pages and WAL frames:
        rewrite the file (VACUUM) and empty the WAL, so replaced values (clear-text secrets
        being encrypted) are gone from the disk. PostgreSQL: old row versions stay until
        autovacuum reuses their space (``VACUUM FULL nodes`` to force it)."""
        path = self.engine.url.database
        if self.dialect != "sqlite" or not path or path == ":memory:":
            return
        self.dispose()  # VACUUM needs no other transaction open on this side
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
