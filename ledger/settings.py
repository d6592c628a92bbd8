"""Storage and service settings, read from `VLEDGER_*` variables and mapped onto eventsourcing's."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.deadlines import StoreDeadlines

DEFAULT_DATABASE_URL = "sqlite:///var/ledger.db"

# PostgreSQL connections of one process, (opened at start, at most): the ledger's pool here,
# the views' pools in projections/store.py. A process opens at most 20 + 8 + 4 = 32, so two
# API workers and a CLI fit PostgreSQL's default max_connections of 100; an HTTP read takes
# none of the ledger's (it goes through the views' event-loop pool).
LEDGER_CONNECTIONS = (4, 20)


class Settings(BaseSettings):
    """Everything the service can be told; only the database URL matters to run it."""

    model_config = SettingsConfigDict(env_prefix="VLEDGER_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    admin_token: str | None = None
    activity_margin_minutes: int = Field(default=0, ge=0, le=24 * 60)
    snapshot_interval: int = Field(default=50, ge=2)
    # Volunteers and activities a process keeps between batches (ledger/loading.Kept); about
    # 2 KB each for a volunteer with ten sessions. 0 keeps none.
    kept_aggregates: int = Field(default=50_000, ge=0)
    read_wait_seconds: float = Field(default=2.0, ge=0, le=30)
    max_view_lag_events: int = Field(default=10_000, ge=0)
    # /readyz also fails when an event has waited this long for the views (a worker that is
    # not running keeps a small lag for ever).
    max_view_lag_seconds: float = Field(default=30.0, ge=0)
    # True: each API process keeps the views itself, after each of its writes and following
    # other processes' writes. False: a `vledger projections run` worker keeps them, and the
    # API only reads them (a read with min_position waits up to read_wait_seconds for it).
    inline_projections: bool = True
    # The file of the key-encryption keys (ledger/keks.py); by default beside the store.
    kek_file: Path | None = None
    # PostgreSQL: how long a request waits for a connection (from a pool, or a new one)
    # before it is a 503, and how long a statement may go unanswered before the server is
    # tried on a new connection (and the statement's connection cut if that fails too):
    # ledger/deadlines.py. A stopped server is a 503 within about `wait`, a frozen one within
    # about `silence` + `wait` (libpq connects in whole seconds, 2 at least).
    store_wait_seconds: float = Field(default=2.0, gt=0, le=60)
    store_silence_seconds: float = Field(default=2.0, gt=0, le=600)
    # Every this many seconds one process of the deployment recomputes every logged event's
    # leaf and the published checkpoint's root (projections/sweep.py); 0 turns it off.
    audit_sweep_seconds: float = Field(default=3600.0, ge=0)
    # Every this many seconds each server signs a checkpoint of the audit log when it grew
    # (projections/audit.py `Auditor.checkpoint`, kept beside the key): events deleted, or a
    # backup restored, after the last checkpoint go unnoticed only for this long (bb42 F1,
    # F4); 0 signs only on request.
    checkpoint_seconds: float = Field(default=60.0, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    def store(self) -> StoreLocation:
        """Where the ledger lives, parsed from the database URL."""
        return StoreLocation.parse(self.database_url)

    def deadlines(self) -> StoreDeadlines:
        """How long the process waits for PostgreSQL (ledger/deadlines.py)."""
        return StoreDeadlines(wait=self.store_wait_seconds, silence=self.store_silence_seconds)


def _refuse_parameters(query: dict[str, list[str]]) -> None:
    """Only `schema` is read from a PostgreSQL URL: anything else (a misspelt `scheme`, which
    would have fallen back to `public`; `sslmode=require`, which would have connected without
    TLS) is refused, naming it, rather than ignored."""
    unknown = sorted(set(query) - {"schema"})
    if unknown:
        hint = ""
        if any(name.startswith("ssl") or name in _LIBPQ for name in unknown):
            hint = (" (TLS and other connection options: set libpq's environment variables, "
                    "e.g. PGSSLMODE=verify-full and PGSSLROOTCERT; every connection reads them)")
        raise ConfigurationError(
            f"VLEDGER_DATABASE_URL takes only the parameter schema, not "
            f"{', '.join(unknown)}{hint}")
    if len(query.get("schema", [])) > 1:
        raise ConfigurationError("VLEDGER_DATABASE_URL names the schema more than once")


_LIBPQ = frozenset({"application_name", "connect_timeout", "options", "target_session_attrs",
                    "gssencmode", "krbsrvname", "passfile", "channel_binding", "service"})


def _host_and_port(entry: str) -> tuple[str, int]:
    """One `host[:port]` of a multi-host URL (an IPv6 address in brackets)."""
    found = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]/]+)(?::(\d{1,5}))?", entry)
    if found is None:
        raise ConfigurationError(f"VLEDGER_DATABASE_URL: cannot read the host {entry!r} "
                                 "(hosts are host[:port], separated by commas)")
    port = int(found.group(2) or 5432)
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"VLEDGER_DATABASE_URL: the port of {entry!r} must be from "
                                 "1 to 65535")
    return unquote(found.group(1).strip("[]")), port


class ConfigurationError(ValueError):
    """A VLEDGER_* setting that cannot be used (the command line says so in one line)."""


_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class StoreLocation:
    """A parsed `VLEDGER_DATABASE_URL`: an SQLite file or a PostgreSQL database (and schema)."""

    kind: str  # "sqlite" or "postgres"
    sqlite_path: Path | None = None
    # The PostgreSQL hosts and their ports: one, or a primary and its standbys
    # (`postgresql://u@a:5432,b:5433/db`), which libpq tries in turn; which one is taken:
    # libpq's PGTARGETSESSIONATTRS (e.g. read-write), read by every connection.
    hosts: tuple[tuple[str, int], ...] = (("127.0.0.1", 5432),)
    user: str = "postgres"
    password: str = ""
    dbname: str = "postgres"
    schema: str = "public"

    @property
    def host(self) -> str:
        """The first host (the only one of most URLs)."""
        return self.hosts[0][0]

    @property
    def port(self) -> int:
        """The first host's port."""
        return self.hosts[0][1]

    @classmethod
    def parse(cls, url: str) -> StoreLocation:
        """Parse `sqlite:///rel/path`, `sqlite:////abs/path` or `postgresql://user@host/db`
        (ConfigurationError, naming VLEDGER_DATABASE_URL, for anything else)."""
        try:
            return cls._parse(url)
        except ConfigurationError:
            raise
        except ValueError as error:  # e.g. urllib's "Port could not be cast to integer value"
            raise ConfigurationError(f"VLEDGER_DATABASE_URL: {error}") from None

    @classmethod
    def _parse(cls, url: str) -> StoreLocation:
        if url.startswith("sqlite:///"):
            raw = url[len("sqlite:///") :]
            if not raw or raw == "/":
                raise ConfigurationError("VLEDGER_DATABASE_URL names no SQLite file")
            if "?" in raw:  # else `?mode=ro` would silently become part of the file's name
                raise ConfigurationError(
                    f"VLEDGER_DATABASE_URL: an SQLite URL takes no parameters "
                    f"({raw[raw.index('?'):]!r}); name the file only")
            return cls(kind="sqlite", sqlite_path=Path(raw))
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ConfigurationError(
                "VLEDGER_DATABASE_URL must start with sqlite:/// or postgresql://, "
                f"not {url.split(':', 1)[0]!r}"
            )
        query = parse_qs(parts.query, keep_blank_values=True)  # `schema=` is an error too
        _refuse_parameters(query)
        schema = query.get("schema", ["public"])[0]
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"VLEDGER_DATABASE_URL's schema {schema!r} must be a plain PostgreSQL name: "
                "a letter or underscore, then letters, digits or underscores (63 at most)")
        hostlist = parts.netloc.rpartition("@")[2]
        if "," in hostlist:  # urllib reads one host; libpq takes a list
            hosts = tuple(_host_and_port(entry) for entry in hostlist.split(","))
        else:  # urllib checks the port: a number from 0 to 65535
            hosts = ((parts.hostname or "127.0.0.1", parts.port or 5432),)
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:  # bb19 F3: libpq would pick one (the user's name) without a word
            raise ConfigurationError(
                "VLEDGER_DATABASE_URL must name the database: postgresql://user@host[:port]/db")
        return cls(
            kind="postgres",
            hosts=hosts,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=dbname,
            schema=schema,
        )

    def _libpq_hosts(self) -> tuple[str, str]:
        """The host and port parameters libpq takes: comma-separated when there are several."""
        return (",".join(h for h, _ in self.hosts), ",".join(str(p) for _, p in self.hosts))

    def connect_kwargs(self) -> dict[str, Any]:
        """psycopg's connection arguments for this store's database (autocommit; the schema
        and any other option are the caller's to add)."""
        host, port = self._libpq_hosts()
        return {"host": host, "port": port, "user": self.user,
                "password": self.password, "dbname": self.dbname, "connect_timeout": 10,
                "autocommit": True}

    @contextmanager
    def session_lock(self, name: str) -> Iterator[Any]:
        """PostgreSQL: hold the advisory lock `name` of this store's schema on a connection of
        its own (yielded) while the block runs; closing it releases the lock, whatever
        happens. Processes that take the same name run the block one at a time."""
        import psycopg

        with psycopg.connect(**self.connect_kwargs()) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{name}:{self.schema}",))
            yield conn

    def connector(self, deadlines: StoreDeadlines) -> Callable[[], Any]:
        """A new connection to this store's PostgreSQL server, given up after the deadlines'
        connect timeout (the watchdog's test of a server that stopped answering)."""
        import psycopg

        kwargs = {**self.connect_kwargs(), "connect_timeout": deadlines.connect_timeout}
        return lambda: psycopg.connect(**kwargs)

    def exists(self) -> bool:
        """Whether a ledger is stored here: its events table, in the SQLite file or the
        PostgreSQL schema. Commands that only read (and `tokens`) refuse a store that holds
        none rather than make one: a mistyped path, or an empty file or schema, is not a
        healthy, empty ledger. Nothing is created or written to find out."""
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            if not self.sqlite_path.is_file():
                return False
            uri = f"file:{quote(str(self.sqlite_path.resolve()))}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True)) as conn:
                return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                    "name = 'stored_events'").fetchone() is not None
        import psycopg

        with psycopg.connect(**self.connect_kwargs()) as conn:
            return conn.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = "
                                "%s AND table_name = 'ledger_events'",
                                (self.schema,)).fetchone() is not None

    def write_problem(self) -> str | None:
        """On SQLite: why the file cannot be written (a read-only file or directory), found by
        a write rolled back at once; None when it can, or when another writer holds the lock.
        A server on a file it cannot write would answer every write with a 503 that says to
        try again. PostgreSQL says so per statement: None."""
        if self.kind != "sqlite" or self.sqlite_path is None or not self.sqlite_path.exists():
            return None
        try:
            with closing(sqlite3.connect(str(self.sqlite_path), timeout=5,
                                         isolation_level=None)) as conn:
                conn.execute("BEGIN IMMEDIATE")  # a read-only file takes this lock too
                try:
                    conn.execute("CREATE TABLE vledger_write_check (x INTEGER)")
                finally:
                    conn.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            text = str(error)
            return None if "locked" in text or "busy" in text else text
        return None

    def describe(self) -> str:
        """A human description without the password."""
        if self.kind == "sqlite":
            return f"SQLite file {self.sqlite_path}"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        return f"PostgreSQL {self.user}@{hosts}/{self.dbname} schema {self.schema}"

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing settings for this store (ids are text on both stores)."""
        env = {"ORIGINATOR_ID_TYPE": "text"}
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            env.update(
                PERSISTENCE_MODULE="eventsourcing.sqlite",
                # Checks a write's guard inside its insert (see ledger/guards.py).
                APPLICATION_RECORDER_TOPIC="ledger.sqliterecorder:LedgerSQLiteRecorder",
                SQLITE_DBNAME=str(self.sqlite_path),
                SQLITE_LOCK_TIMEOUT="30",
            )
        else:
            host, port = self._libpq_hosts()
            env.update(
                PERSISTENCE_MODULE="eventsourcing.postgres",
                # Large inserts outside psycopg's pipeline mode, and write guards (see
                # ledger/pgrecorder.py).
                APPLICATION_RECORDER_TOPIC="ledger.pgrecorder:LedgerPostgresRecorder",
                POSTGRES_DBNAME=self.dbname,
                POSTGRES_HOST=host,
                POSTGRES_PORT=port,
                POSTGRES_USER=self.user,
                POSTGRES_PASSWORD=self.password,
                POSTGRES_SCHEMA=self.schema,
                POSTGRES_POOL_SIZE=str(LEDGER_CONNECTIONS[0]),
                POSTGRES_MAX_OVERFLOW=str(LEDGER_CONNECTIONS[1] - LEDGER_CONNECTIONS[0]),
                POSTGRES_LOCK_TIMEOUT="10",
                # The pool's wait for a connection: the ledger sets its own (Settings'
                # store_wait_seconds, ledger/deadlines.py) before the pool opens.
                POSTGRES_CONNECT_TIMEOUT="10",
            )
        return env


# PostgreSQL compiles a statement with JIT once the planner's cost estimate passes
# `jit_above_cost`. Loading aggregates asks `originator_id = ANY(…)`, which the planner puts
# at ~47,000 rows on a 2M-event log (the ids' n_distinct is underestimated where most ids
# have one event): each load paid ~11 ms of JIT for a 1 ms query, and one API write made
# several. The ledger runs short statements only, so its connections turn JIT off.
NO_JIT = "-c jit=off"


def turn_off_jit() -> None:
    """Add `-c jit=off` to PGOPTIONS, which libpq applies to every connection this process
    opens without options of its own (the library's pool opens them inside its constructor,
    before any hook of ours could run)."""
    current = os.environ.get("PGOPTIONS", "")
    if "jit=" not in current:
        os.environ["PGOPTIONS"] = f"{current} {NO_JIT}".strip()
