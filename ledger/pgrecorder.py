"""The PostgreSQL application recorder, without pipeline mode for large inserts.

eventsourcing 9.5's recorder sends an insert's statements in psycopg's pipeline mode: the
transaction, the EXCLUSIVE lock on the events table (which keeps positions in commit order),
the NOTIFY and the INSERT with every event go out before any answer is read. When another
writer holds the lock, the server waits on it and reads no more; an INSERT larger than the
sockets' buffers (a batch of 5,000 sessions is about 10,000 events and 4.6 MB) then stops
half-sent, and psycopg waited for ever for results that could not come, holding a connection
that the server saw as waiting on the client, and the table lock once it got it: every other
writer of every process stopped behind it (found from outside; reproduced with 20,000 events
under a two-second lock: never returned).

Here an insert of more than `PIPELINE_BYTES` is sent statement by statement in the same
transaction: the lock is awaited before the events are sent, then the INSERT goes out while
the server reads. Small inserts (a single session: two events of a few hundred bytes) keep the
pipeline, which saves them two round trips.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from psycopg import Cursor, errors
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from ledger.deadlines import RETRY_WITHIN_SECONDS, OutcomeUnknown, StoreSilent, pool_timeout
from ledger.eventseals import SEALS_TABLE, STORE_TABLE, EventSeals, new_store_id
from ledger.eventseals import create_statements as seal_statements
from ledger.guards import check_tail, current_guard
from ledger.keks import KekRetired, KeyRing
from ledger.keytable import KEYS_TABLE, create_statements
from ledger.sealing import current_key_changes
from ledger.sqliterecorder import LAST_POSITION, EventRow

PIPELINE_BYTES = 64 * 1024  # well inside a loopback or LAN socket's buffers
# A read whose connection broke at once is asked again (within RETRY_WITHIN_SECONDS); not one
# that failed later or for want of a connection (the pool waited its time): that is a 503 now,
# where the library's retries (10 attempts, 0.2 s apart, each waiting for the pool) took 10 s
# and more while the store was down.
READ_ATTEMPTS = 3
R = TypeVar("R")


def _broken(error: BaseException) -> bool:
    """Whether a store error is a connection that broke (no answer came), rather than the
    server refusing a statement (it sent an error: SQLSTATE), a pool's wait running out or
    the watchdog holding a statement back (nothing was sent)."""
    if pool_timeout(error):
        return False
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "sqlstate", None) or isinstance(seen, StoreSilent):
            return False
        seen = seen.__cause__
    return True


def _reading(method: Callable[..., R]) -> Callable[..., R]:
    """A read that changes nothing, asked again when its connection broke at once."""

    @functools.wraps(method)
    def read(*args: Any, **kwargs: Any) -> R:
        started = time.monotonic()
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return method(*args, **kwargs)
            except (InterfaceError, OperationalError) as error:
                if (attempt == READ_ATTEMPTS or not _broken(error)
                        or time.monotonic() - started > RETRY_WITHIN_SECONDS):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    return read


def _unretried(method: Any) -> Any:
    """The library's method without its `@retry` (functools.wraps keeps it)."""
    return method.__wrapped__


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    """`PostgresApplicationRecorder` that sends large inserts outside pipeline mode, and
    inserts nothing (so takes no position) when a write lost a race.

    The library's INSERT takes a position from the table's sequence for each event before the
    primary key refuses an event whose version another writer stored first; the transaction
    rolls back but the positions stay taken, so positions skipped numbers wherever writers
    raced (20 racing transfers of one volunteer, five times, took 394 positions for 56 events).
    Here the INSERT first looks for any event of the write already stored, under the table
    lock that every insert holds, and then inserts none: the write fails with the same
    IntegrityError, which the ledger answers by trying again, and no position is used.
    """

    # Set by the ledger once the store's KEKs are checked (ledger/keyrotation.open_ring).
    ring: KeyRing
    # Set by the ledger: the key that seals every event written (ledger/eventseals.py). None
    # writes unsealed events.
    seals: EventSeals | None = None

    def __init__(self, datastore: PostgresDatastore, *,
                 events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        names = {"schema": Identifier(self.datastore.schema),
                 "table": Identifier(self.events_table_name),
                 # text for the ledger's ids; the library's default, uuid, for plain
                 # aggregates (the benchmark's baseline)
                 "id_type": Identifier(self.datastore.originator_id_type)}
        # Each lookup is a LATERAL subquery with LIMIT 1, which the planner cannot turn into a
        # join: a plain JOIN was planned as a hash join over a sequential scan of the whole
        # events table whenever the table had no statistics (autovacuum off, or not run yet)
        # or psycopg's prepared statement went generic. At 220,000 events that was 73 ms per
        # insert, growing with the table; as lookups of the primary key, 0.2 ms.
        # The events go as four arrays in binary (%b), not one array of the library's
        # composite type: psycopg writes a composite's fields as escaped text in Python, a
        # quarter of a bulk import's time on PostgreSQL. 2,000 events: 43 ms to adapt as
        # composites, 21 ms as text arrays, 2 ms as binary arrays.
        insert = (
            "WITH new AS (SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], "
            "%b::bytea[]) AS n(originator_id, originator_version, topic, state)) "
            "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, "
            "state) SELECT originator_id, originator_version, topic, state FROM new "
            "WHERE NOT EXISTS (SELECT 1 FROM new n CROSS JOIN LATERAL (SELECT 1 FROM "
            "{schema}.{table} e WHERE e.originator_id = n.originator_id "
            "AND e.originator_version = n.originator_version LIMIT 1) stored) ")
        self.insert_events_statement = SQL(insert + "RETURNING notification_id").format(**names)
        # The same, inserting nothing if an aggregate the write was checked against has moved
        # past the version read (a guard's `unchanged`, ledger/guards.py), in the one
        # statement, so a guarded write keeps the pipeline.
        self.insert_unchanged_statement = SQL(
            insert + "AND NOT EXISTS (SELECT 1 FROM unnest(%b::{id_type}[], %b::bigint[]) "
            "AS g(id, v) CROSS JOIN LATERAL (SELECT 1 FROM {schema}.{table} e "
            "WHERE e.originator_id = g.id AND e.originator_version > g.v LIMIT 1) moved) "
            "RETURNING notification_id").format(**names)

        # The keys of sealed numbers (ledger/sealing.py), wrapped under a KEK (keks.py):
        # stored and deleted with the events. The schema is a plain name (settings.py).
        keys = {"schema": Identifier(self.datastore.schema), "keys": Identifier(KEYS_TABLE)}
        self.sql_create_statements.extend(
            SQL(statement).format() for statement in create_statements(True, self.datastore.schema))
        self.insert_keys_statement = SQL(
            "INSERT INTO {schema}.{keys} (key_id, key, kek_id) SELECT k, w, %s::text FROM "
            "unnest(%b::text[], %b::bytea[]) AS n(k, w)").format(**keys)
        self.delete_keys_statement = SQL(
            "DELETE FROM {schema}.{keys} WHERE key_id = ANY(%b::text[])").format(**keys)
        self.select_keys_statement = SQL(
            "SELECT key_id, key, kek_id FROM {schema}.{keys} WHERE key_id = ANY(%b::text[])"
        ).format(**keys)

        # The seals of the events written (ledger/eventseals.py).
        self.sql_create_statements.extend(
            SQL(statement).format() for statement in seal_statements(True, self.datastore.schema))
        seals = {**names, "seals": Identifier(SEALS_TABLE), "store": Identifier(STORE_TABLE)}
        self.store_id_statements = (
            SQL("SELECT store_id FROM {schema}.{store} WHERE one = 1").format(**seals),
            SQL("SELECT EXISTS (SELECT 1 FROM {schema}.{seals})").format(**seals),
            SQL("INSERT INTO {schema}.{store} (one, store_id) VALUES (1, %s) ON CONFLICT (one) "
                "DO NOTHING").format(**seals))
        self.insert_seals_statement = SQL(
            "INSERT INTO {schema}.{seals} (position, mac) SELECT * FROM unnest(%b::bigint[], "
            "%b::bytea[]) ON CONFLICT (position) DO UPDATE SET mac = excluded.mac"
        ).format(**seals)
        self.seal_check_statements = (
            SQL("SELECT EXISTS (SELECT 1 FROM {schema}.{table})").format(**seals),
            SQL("SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, "
                "e.state, s.mac FROM {schema}.{seals} s JOIN {schema}.{table} e ON "
                "e.notification_id = s.position ORDER BY s.position DESC LIMIT 1").format(**seals))
        missing = ("FROM {schema}.{table} e WHERE NOT EXISTS (SELECT 1 FROM {schema}.{seals} s "
                   "WHERE s.position = e.notification_id)")
        self.unsealed_statements = (
            SQL("SELECT COUNT(*) " + missing).format(**seals),
            SQL("SELECT e.notification_id " + missing + " ORDER BY 1 LIMIT %s").format(**seals))

        self.select_rows_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {schema}.{table} WHERE notification_id >= %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s").format(**names)

    @_reading
    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        return _unretried(PostgresApplicationRecorder.select_events)(self, *args, **kwargs)

    @_reading
    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        return _unretried(PostgresApplicationRecorder.select_notifications)(self, *args,
                                                                            **kwargs)

    @_reading
    def max_notification_id(self) -> int | None:
        found: int | None = _unretried(PostgresApplicationRecorder.max_notification_id)(self)
        return found

    @_reading
    def select_rows(self, start: int, limit: int, stop: int | None = None) -> list[EventRow]:
        """The events `select_notifications(start, limit, stop)` answers, as plain tuples
        (no dict and no `Notification` per event; see the SQLite recorder)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self.select_rows_statement,
                         (start, LAST_POSITION if stop is None else stop, limit), prepare=True)
            return curs.fetchall()

    @_reading
    def select_keys(self, ids: Collection[str]) -> dict[str, bytes]:
        """The stored keys among `ids`, unwrapped (an erased number's key is not among them)."""
        if not ids:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self.select_keys_statement, (sorted(ids),))
            rows = curs.fetchall()
        return {key_id: self.ring.unwrap(key_id, kek_id, bytes(key))
                for key_id, key, kek_id in rows}

    def _insert_stored_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent],
                              **kwargs: Any) -> None:
        """Lock the table, check the write's guard (ledger/guards.py) under the lock, notify,
        insert."""
        self._lock_table(curs)
        guard = current_guard()
        if guard is not None and guard.tail is not None:
            table = SQL("{}.{}").format(Identifier(self.datastore.schema),
                                        Identifier(self.events_table_name)).as_string(curs)
            check_tail(guard, curs, table, postgres=True)
        self._notify_channel(curs)
        columns = ([e.originator_id for e in stored_events],
                   [e.originator_version for e in stored_events],
                   [e.topic for e in stored_events], [e.state for e in stored_events])
        if guard is None or not guard.unchanged:
            curs.execute(self.insert_events_statement, columns)
            return
        ids = sorted(guard.unchanged)
        curs.execute(self.insert_unchanged_statement,
                     (*columns, ids, [guard.unchanged[i] for i in ids]))

    def _fetch_ids_after_insert_events(self, curs: Cursor[DictRow],
                                       stored_events: Sequence[StoredEvent],
                                       **kwargs: Any) -> Sequence[int] | None:
        """The inserted events' positions; IntegrityError when none were inserted. Then, and
        only then, store and delete the write's keys (ledger/sealing.py).

        Not before: in pipeline mode the library catches this IntegrityError inside the
        transaction and raises it after the transaction has COMMITTED (it inserted nothing, so
        that was harmless), which would have kept a refused write's keys, and its deletions:
        a number erased by a withdrawal that was never stored."""
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if ids is not None and len(ids) < len(stored_events):
            raise IntegrityError("another writer stored a version of the same aggregate first, "
                                 "or changed one this write was checked against (nothing of "
                                 "this write was inserted)")
        if self.seals is not None and ids:
            self._seal(curs, self.seals, ids, stored_events)
        changes = current_key_changes()
        if changes is not None:
            if changes.added:
                # Under a KEK the store lists: one a rotation deleted fails the foreign key.
                kek_id = self.ring.current()
                curs.execute(self.insert_keys_statement, (
                    kek_id, list(changes.added),
                    [self.ring.wrap(k, key, kek_id)[1] for k, key in changes.added.items()]))
            if changes.erased:
                curs.execute(self.delete_keys_statement, (sorted(changes.erased),))
        return ids

    @_reading
    def _ready_to_seal(self, seals: EventSeals) -> None:
        """Before this process's first write: the key loaded, and checked against the store's
        last sealed event (eventseals.py `for_writing`). Not in the write: in pipeline mode the
        library COMMITS a transaction whose `_fetch_ids_after_insert_events` raised."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            exists, last = self.seal_check_statements
            empty = not curs.execute(exists).fetchone()[0]  # type: ignore[index]
            seals.for_writing(empty, curs.execute(last).fetchone())

    def _seal(self, curs: Cursor[DictRow], seals: EventSeals, positions: Sequence[int],
              stored_events: Sequence[StoredEvent]) -> None:
        """Store the write's seals (ledger/eventseals.py): nothing here may raise but the
        store (the key was loaded before the write)."""
        made = seals.seals(positions, stored_events)
        curs.execute(self.insert_seals_statement, ([p for p, _ in made], [m for _, m in made]))

    @_reading
    def store_id(self, make: bool = False) -> str | None:
        """The store's own random id (ledger/eventseals.py: the seal key is this store's),
        made by the first writer that needs it (`make`); None when there is none yet."""
        read, sealed, insert = self.store_id_statements
        with self.datastore.get_connection() as conn, conn.transaction(), \
                conn.cursor(row_factory=tuple_row) as curs:
            row = curs.execute(read).fetchone()
            if row is not None:
                return str(row[0])
            if not make:
                return None
            found = curs.execute(sealed).fetchone()
            curs.execute(insert, (new_store_id(bool(found and found[0])),))
            row = curs.execute(read).fetchone()
        assert row is not None
        return str(row[0])

    def store_seals(self, rows: Sequence[tuple[int, bytes]]) -> None:
        """Seal stored events (`vledger seal`: a store written before seals)."""
        with self.datastore.get_connection() as conn, conn.transaction(), \
                conn.cursor() as curs:
            curs.execute(self.insert_seals_statement, ([p for p, _ in rows],
                                                       [m for _, m in rows]))

    @_reading
    def unsealed_positions(self, limit: int) -> tuple[int, list[int]]:
        """How many stored events have no seal row, and the first `limit` of their
        positions."""
        count, first = self.unsealed_statements
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            found = curs.execute(count).fetchone()
            rows = curs.execute(first, (limit,)).fetchall()
        return int(found[0]) if found else 0, [int(p) for (p,) in rows]

    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        changes = current_key_changes()
        if changes is not None and changes.added:
            self.ring.current()  # read again, before the transaction, after a refused write
        if self.seals is not None and not self.seals.ready:
            self._ready_to_seal(self.seals)
        try:
            return self._insert_unretried(stored_events, **kwargs)
        except IntegrityError as error:
            if not isinstance(error.__cause__, errors.ForeignKeyViolation):
                raise
            self.ring.stale = True  # the retry reads which KEK is current now
            raise KekRetired("the KEK this write's keys were wrapped under was retired by a "
                             "rotation; nothing of it was stored") from error

    def _insert_unretried(self, stored_events: Sequence[StoredEvent],
                          **kwargs: Any) -> Sequence[int] | None:
        """Insert, once: never sent again when the connection broke, as the library's
        `@retry` did, since it may have broken after the COMMIT went out (OutcomeUnknown).
        Sent again, a write stored already is refused as a lost race (IntegrityError) and its
        use case runs again: a registration without an idempotency key would be stored
        twice. The client decides, and a write sent again with its `source_record_id` or
        `Idempotency-Key` is recognised."""
        try:
            return self._insert_once(stored_events, **kwargs)
        except (InterfaceError, OperationalError) as error:
            if _broken(error):
                raise OutcomeUnknown(
                    f"the connection to the store broke while a write was stored ({error}); "
                    "it may or may not have been committed") from error
            raise

    def _insert_once(self, stored_events: Sequence[StoredEvent],
                     **kwargs: Any) -> Sequence[int] | None:
        size = sum(len(e.state) + len(e.topic) + len(str(e.originator_id))
                   for e in stored_events)
        # A guard on what was stored meanwhile is read before the INSERT is sent: not in
        # pipeline mode (a guard of versions is part of the INSERT: see above).
        guard = current_guard()
        pipelined = size <= PIPELINE_BYTES and (guard is None or guard.tail is None)
        # Never the library's database function (POSTGRES_ENABLE_DB_FUNCTIONS): it inserts
        # without the guard's checks and without the keys of sealed numbers.
        if pipelined:
            ids: Sequence[int] | None = _unretried(PostgresApplicationRecorder.insert_events)(
                self, stored_events, **kwargs)
            return ids
        with self.datastore.get_connection() as conn, conn.transaction(), \
                conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)
            self._insert_stored_events(curs, stored_events, **kwargs)  # lock, notify, insert
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
