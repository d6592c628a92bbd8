"""The view store: the read models' own tables, in the same SQLite file or PostgreSQL schema.

One small wrapper gives both stores one face: SQL is written with `?` placeholders and runs on
sqlite3 or psycopg; upserts use `INSERT … ON CONFLICT … DO UPDATE`, which both understand.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from ledger.deadlines import RETRY_WITHIN_SECONDS, StoreDeadlines
from ledger.errors import StoreBusy
from ledger.settings import LEDGER_CONNECTIONS, NO_JIT, StoreLocation
from ledger.sql import one_of, values_of
from ledger.watchdog import Watchdog, bound_pool, refuse_while_silent, watched

_INSERT_VALUES = re.compile(r"^(INSERT INTO [^?]*? )VALUES (\([?, ]+\))([^?]*)$", re.DOTALL)
_INTO = re.compile(r"^INSERT INTO (\w+) \(([\w, ]+)\) $")
COPY_ROWS = 2000  # from this many rows on, PostgreSQL gets them by COPY (see executemany)


SQLITE_CACHE_KIB = 128 * 1024
SORTER_THREADS = min(4, os.cpu_count() or 1)
# PostgreSQL connections of one process (with ledger.settings.LEDGER_CONNECTIONS): at most
# VIEW_CONNECTIONS for the runner and the reads made in worker threads, and a fixed pool for
# the event loop's reads (ViewStore.read), and one that listens for new events (a follower's
# runner.Wakeup). Two to four reads in flight keep a worker's share of two cores busy; more
# only queue inside the server.
VIEW_CONNECTIONS = 8
# A view connection opened for a burst is closed after this long unused (psycopg_pool's
# default, 10 min, kept a server's connections after a burst for 13 min and more, while the
# CLI and psql were refused "too many clients": bb13 F4).
VIEW_IDLE_SECONDS = 60.0
ASYNC_READ_CONNECTIONS = 4
# The most one API process may hold at once, under load: its ledger's pool, both view pools
# and the follower's listening connection (`vledger serve` warns when workers times this may
# not fit the server's max_connections).
PROCESS_CONNECTIONS = LEDGER_CONNECTIONS[1] + VIEW_CONNECTIONS + ASYNC_READ_CONNECTIONS + 1


def _pg_type(column: Sequence[Any]) -> str:
    """The PostgreSQL type of a column of Python values (text when all are None)."""
    value = next((v for v in column if v is not None), "")
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double precision"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytea"
    return "text"


class ViewCursor:
    """A cursor that takes `?` placeholders on both stores."""

    def __init__(self, raw: Any, postgres: bool) -> None:
        self.raw = raw
        self.postgres = postgres
        self._pipelined = False

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """PostgreSQL: statements whose results nobody reads go out together, and the next
        read (or the end of the block) waits for them all: a catch-up of a few events made
        one round trip per statement, a third of a single write's time. Errors surface at
        that wait and fail the transaction as before. Not for bulk work (COPY cannot run in
        a pipeline; executemany then sends arrays instead). Nothing changes on SQLite."""
        if not self.postgres or self._pipelined:
            yield
            return
        self._pipelined = True
        try:
            with self.raw.connection.pipeline():
                yield
        finally:
            self._pipelined = False

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> ViewCursor:
        self.raw.execute(self._sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement for each row; on PostgreSQL, an INSERT sends all rows at once.

        psycopg sends one protocol message per row even in pipeline mode, which costs more than
        the write itself; `INSERT … SELECT * FROM unnest(array, array, …)` sends one array per
        column instead. The rows of one call must not repeat a conflict key (every fold writes
        each key once).
        """
        if not rows:
            return
        match = _INSERT_VALUES.match(sql) if self.postgres else None
        if match is None:
            self.raw.executemany(self._sql(sql), [tuple(r) for r in rows])
            return
        head, _group, tail = match.groups()
        into = _INTO.match(head)
        if into is not None and len(rows) >= COPY_ROWS and not self._pipelined:
            self._copy_insert(into.group(1), into.group(2), tail, rows)
            return
        columns = [list(column) for column in zip(*rows, strict=True)]
        arrays = ", ".join(f"%b::{_pg_type(column)}[]" for column in columns)
        self.raw.execute(f"{head}SELECT * FROM unnest({arrays}){tail}", columns)

    def _copy_insert(self, table: str, columns: str, tail: str,
                     rows: Sequence[Sequence[Any]]) -> None:
        """COPY the rows into a temporary staging table, then insert them from there.

        psycopg dumps array parameters element by element in Python (a third of a rebuild's
        time at a million events); COPY rows go through its C row writer. The staging table
        lives as long as the connection and is emptied after each use (a rollback also takes
        back what was copied into it).
        """
        if not tail.strip():  # a plain append: straight into the table
            with self.raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        stage = f"_stage_{table}_{zlib.crc32(columns.encode()):08x}"
        self.raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS "
                         f"SELECT {columns} FROM {table} WITH NO DATA")
        with self.raw.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        self.raw.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage}{tail}")
        self.raw.execute(f"TRUNCATE {stage}")

    def one_of(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A condition `column` is one of `values`, and its one parameter, for any number of
        values: an array on PostgreSQL, a JSON array on SQLite (no placeholder per value)."""
        return one_of(column, self.postgres), values_of(values, self.postgres)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.raw.fetchall()]

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self.raw.fetchone()
        return tuple(row) if row is not None else None


def table_names(cur: ViewCursor) -> set[str]:
    """The tables of the store's own namespace."""
    if cur.postgres:
        sql = ("SELECT table_name FROM information_schema.tables "
               "WHERE table_schema = current_schema()")
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {str(r[0]) for r in cur.execute(sql).fetchall()}


def _no_gate(seconds: float | None = None) -> AbstractContextManager[None]:
    return nullcontext()


class ViewStore:
    """Connections to the views' tables; writers take a store-wide lock for their transaction."""

    def __init__(self, location: StoreLocation,
                 gate: Callable[[float | None], AbstractContextManager[None]] = _no_gate,
                 watchdog: Watchdog | None = None) -> None:
        self.location = location
        # On SQLite, view writers take the same per-process write turn as the ledger's saves.
        self.gate = gate
        self.postgres = location.kind == "postgres"
        self._local = threading.local()
        self._pool: Any = None
        self._async_pool: Any = None
        self._tables_seen: set[str] = set()
        # PostgreSQL's connections are bounded as the ledger's are (ledger/deadlines.py), by
        # the ledger's watchdog (an API process), or one of the store's own (the CLI).
        self._own_watchdog = None
        if self.postgres and watchdog is None:
            deadlines = StoreDeadlines()
            watchdog = self._own_watchdog = Watchdog(location.connector(deadlines), deadlines)
        self.watchdog = watchdog
        if self.postgres:
            from psycopg_pool import ConnectionPool

            assert watchdog is not None
            # Bounded as the ledger's pool is, before it opens (bound_pool): each connection
            # is also checked as it leaves the pool (after the server restarts, every pooled
            # connection is dead, and each would otherwise fail one transaction of the runner
            # or one request before the pool dropped it).
            self._pool = ConnectionPool(conninfo="", kwargs=self._connect_kwargs(),
                                        min_size=1, max_size=VIEW_CONNECTIONS, open=False,
                                        max_idle=VIEW_IDLE_SECONDS)
            bound_pool(self._pool, watchdog)
            self._pool.open()

    def _connect_kwargs(self) -> dict[str, Any]:
        assert self.watchdog is not None
        return {
            **self.location.connect_kwargs(),
            "connect_timeout": self.watchdog.deadlines.connect_timeout,
            # The views' commits do not wait for their WAL to reach the disk (as SQLite's
            # synchronous=NORMAL): a server crash can lose the last of them, rows and position
            # together, and the runner folds those events again. What must outlive a crash
            # (a published checkpoint) asks for it in its own transaction.
            "options": (f"-c search_path={self.location.schema} {NO_JIT} "
                        "-c synchronous_commit=off"),
            # Whose connections these are, in pg_stat_activity (and for an operator's
            # pg_terminate_backend): the views of this process.
            "application_name": f"vledger-views-{os.getpid()}",
        }

    def connect(self) -> Any:
        """A new connection of its own to the store's PostgreSQL database (autocommit)."""
        import psycopg

        assert self.watchdog is not None
        return watched(psycopg.Connection, self.watchdog).connect(**self._connect_kwargs())

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            assert self.location.sqlite_path is not None
            conn = sqlite3.connect(str(self.location.sqlite_path), timeout=30,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # The views' B-trees outgrow SQLite's default 8 MB page cache near a million
            # events, and every upsert then reads pages back; 128 MB keeps them warm.
            conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            # Checkpoint the WAL every 40 MB rather than every 4 MB: a page the views rewrite
            # often is copied into the database file once per checkpoint, not once per page.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            # Sorts too big for the cache (a rebuild's settling statements group a million
            # rows) may use helper threads: 8% off a rebuild at 1M events on two cores.
            conn.execute(f"PRAGMA threads={SORTER_THREADS}")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, lock: str | None = None,
                    wait: float | None = None) -> Iterator[ViewCursor]:
        """One transaction; with `lock`, writers of the same name run one at a time. With
        `wait`, a writer that does not get the lock within that many seconds gives up
        (StoreBusy) rather than wait for as long as another holds it."""
        if self.postgres:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                if lock is not None:
                    self._pg_lock(cur, lock, wait)
                yield ViewCursor(cur, postgres=True)
            return
        with self.gate(wait) if lock is not None else nullcontext():
            yield from self._sqlite_transaction(lock is not None)

    @staticmethod
    def _pg_lock(cur: Any, lock: str, wait: float | None) -> None:
        key = zlib.crc32(lock.encode())
        if wait is None:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            return
        import psycopg

        cur.execute(f"SET LOCAL lock_timeout = '{max(1, int(wait * 1000))}ms'")
        try:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            raise StoreBusy(f"another writer held the views for {wait:g} s") from None
        cur.execute("SET LOCAL lock_timeout = 0")

    def _sqlite_transaction(self, writing: bool) -> Iterator[ViewCursor]:
        conn = self._sqlite()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE" if writing else "BEGIN")
        try:
            yield ViewCursor(cur, postgres=False)
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cur.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read-only statement, outside any transaction: one round trip on PostgreSQL."""
        if self.postgres:
            with self._pool.connection() as conn:
                return [tuple(r) for r in conn.execute(sql.replace("?", "%s"), params)]
        return [tuple(r) for r in self._sqlite().execute(sql, params).fetchall()]

    async def open_reads(self) -> None:
        """Open the event loop's pool for `read` (PostgreSQL; nothing to open on SQLite).

        Its connections are made in the background, not awaited: a server short of
        connections ("too many clients", other processes holding them) made a worker's start
        fail after 10 s with a traceback, and the whole server exit (bb15 F2). A read now waits
        for a connection as long as any (the deadlines' `wait`), and is a 503 after that."""
        if self.postgres and self._async_pool is None:
            import psycopg
            from psycopg_pool import AsyncConnectionPool

            assert self.watchdog is not None
            pool: Any = AsyncConnectionPool(
                conninfo="", kwargs=self._connect_kwargs(),
                connection_class=watched(psycopg.AsyncConnection, self.watchdog),
                min_size=ASYNC_READ_CONNECTIONS, max_size=ASYNC_READ_CONNECTIONS, open=False,
                timeout=self.watchdog.deadlines.wait)
            refuse_while_silent(pool, self.watchdog)
            await pool.open(wait=False)
            self._async_pool = pool

    async def close_reads(self) -> None:
        """Close the event loop's pool, from the loop that opened it."""
        pool, self._async_pool = self._async_pool, None
        if pool is not None:
            await pool.close()

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`query` for a coroutine: one read-only statement, without a worker thread.

        On SQLite it runs on the event loop: an indexed read of a local file (WAL: never blocked
        by a writer) costs less than the hop to a thread. On PostgreSQL it goes through a small
        pool of psycopg's asynchronous connections opened by `open_reads`: a process whose
        reads each hold a thread while they wait on the server spends its tail in GIL
        hand-offs among dozens of threads (measured: p99 246 ms with threads, 48 ms without,
        for the same one-row query under 50 clients). Without that pool (a process that never
        opened it) the read goes to a thread.
        """
        if not self.postgres:
            return self.query(sql, params)
        pool = self._async_pool
        if pool is None:
            return await asyncio.to_thread(self.query, sql, params)
        import psycopg

        # The hot path checks no connection before use (a round trip per read): a connection
        # the server dropped (a restart) fails, the pool discards it when it comes back, and
        # the read, which changes nothing, is asked again on another; not one that broke after
        # a while (cut by the watchdog: the server does not answer).
        started = time.monotonic()
        for attempt in range(ASYNC_READ_CONNECTIONS + 1):
            async with pool.connection() as conn:
                try:
                    cur = await conn.execute(sql.replace("?", "%s"), params)
                    return [tuple(r) for r in await cur.fetchall()]
                except psycopg.OperationalError:
                    if (not conn.broken or attempt == ASYNC_READ_CONNECTIONS
                            or time.monotonic() - started > RETRY_WITHIN_SECONDS):
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def has_table(self, cur: ViewCursor, name: str) -> bool:
        """Whether the store holds a table, asked of the store only until it is found: a view's
        tables are dropped and made again in one transaction (a rebuild), never left gone, so
        a read served on every request asks once, not each time."""
        if name in self._tables_seen:
            return True
        if name in table_names(cur):
            self._tables_seen.add(name)
            return True
        return False

    @contextmanager
    def reading(self) -> Iterator[ViewCursor]:
        """A read-only transaction (a consistent snapshot on both stores)."""
        with self.transaction() as cur:
            yield cur

    def analyze(self) -> None:
        """Give PostgreSQL's planner statistics of the store's tables, after a bulk fill.

        Tables filled faster than autovacuum visits them, or on a server that runs without it,
        have none, and the planner then guesses `= ANY(…)` matches a large share of a table
        (ledger/loading.py measured what that costs). SQLite plans by its indexes without
        statistics, and its ANALYZE would only change plans that are measured good.
        """
        if not self.postgres:
            return
        with self.transaction() as cur:
            for table in sorted(table_names(cur)):
                cur.execute(f'ANALYZE "{table}"')

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._own_watchdog is not None:
            self._own_watchdog.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def connection_budget(store: ViewStore, processes: int) -> str | None:
    """Why `processes` API processes may not fit the PostgreSQL server's connections (None
    when they fit): each may hold PROCESS_CONNECTIONS at once under load, and a server out of
    connections refuses new ones (answered 503 then)."""
    [row] = store.query(
        "SELECT current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int, "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')")
    allowed, reserved, in_use = (int(v) for v in row)
    wanted = processes * PROCESS_CONNECTIONS
    free = allowed - reserved - in_use
    if wanted <= free:
        return None
    return (f"{processes} worker(s) may open up to {wanted} PostgreSQL connections under load "
            f"({PROCESS_CONNECTIONS} each); the server allows {allowed} ({reserved} reserved, "
            f"{in_use} in use now). Requests past that are answered 503: use fewer workers, "
            "or raise max_connections (or pool them with PgBouncer).")
