"""The SQLite application recorder, checking a write's guard inside its insert.

Our writers take the write turn (ledger/turns.py) before they insert, so a guard checked in the
inserting transaction sees every write committed before it and none can commit between the
check and this insert (ledger/guards.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from ledger.errors import StoreAltered
from ledger.eventseals import SEALS_TABLE, STORE_TABLE, EventSeals, new_store_id
from ledger.eventseals import create_statements as seal_statements
from ledger.guards import check_tail, check_unchanged, current_guard
from ledger.keks import KekRetired, KeyRing
from ledger.keytable import KEKS_TABLE, KEYS_TABLE, create_statements
from ledger.sealing import current_key_changes
from ledger.sql import one_of, values_of

# A stored event as the read side takes it: (position, originator id, version, topic, state).
EventRow = tuple[int, str, int, str, Any]
# The highest position either store can give: `select_rows`' stop when none is asked for.
LAST_POSITION = (1 << 63) - 1
# The last position the store gave an event: SQLite's rowids are given again after the last
# rows are deleted, PostgreSQL's sequence never gives one twice.
POSITIONS_TABLE = "vledger_positions"
POSITIONS_DDL = (f"CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (one INTEGER PRIMARY KEY "
                 "CHECK (one = 1), last INTEGER NOT NULL)")
# How long a write that erased keys waits for readers to let the WAL be truncated.
ERASURE_CHECKPOINT_WAIT_MS = 200
ERASURE_RETRY_SECONDS = 5.0
log = logging.getLogger("vledger.ledger")
# Any number of key ids as one parameter (a JSON array): no statement per 500 of them.
_ONE_OF_KEYS = one_of("key_id", postgres=False)


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    """`SQLiteApplicationRecorder` that checks the current write guard before inserting,
    stores and deletes the keys of sealed numbers with the events (ledger/sealing.py),
    wrapped under the current KEK (`ring`, ledger/keks.py), and reads pages of events as plain
    rows."""

    # Set by the ledger once the store's KEKs are checked (ledger/keyrotation.open_ring).
    ring: KeyRing
    # Set by the ledger: the key that seals every event written (ledger/eventseals.py). None
    # writes unsealed events.
    seals: EventSeals | None = None

    # Whether deleted keys may still be in the WAL file, and when a write next tries to
    # truncate it (forget_erased).
    _erased_in_wal = False
    _next_try = 0.0

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *create_statements(False),
                POSITIONS_DDL, *seal_statements(False)]

    def _create_table(self, c: SQLiteCursor) -> None:
        super()._create_table(c)
        # A store written before KEKs: its keys, in plain, gain the column (open_ring wraps
        # them).
        c.execute(f"PRAGMA table_info({KEYS_TABLE})")
        if "kek_id" not in {row["name"] for row in c.fetchall()}:
            c.execute(f"ALTER TABLE {KEYS_TABLE} ADD COLUMN kek_id TEXT REFERENCES "
                      f"{KEKS_TABLE} (kek_id)")
        c.execute(f"CREATE INDEX IF NOT EXISTS personal_keys_kek_id ON {KEYS_TABLE} (kek_id)")

    def _check_positions_kept(self, c: SQLiteCursor) -> None:
        """Refuse (StoreAltered) to write after the store's last events were deleted by hand:
        SQLite gives a new row the position after the last one left, so the write would take
        the deleted events' positions, which the views have read past, and would never be
        counted (bb38 F4). The last position given is kept in the write's own transaction."""
        c.execute(f"SELECT (SELECT last FROM {POSITIONS_TABLE} WHERE one = 1) AS given, "
                  f"(SELECT MAX(rowid) FROM {self.events_table_name}) AS top")
        row = c.fetchone()
        given, top = row["given"], row["top"] or 0
        if given is not None and top < given:
            raise StoreAltered("the event store", int(given), (
                f"its events end at position {top}, but it had given positions up to "
                f"{given}: its last events were deleted by hand, and a new write would take "
                "their positions, which the views have read past. Restore the store from a "
                "backup (`vledger verify` names what is gone)"))

    def _seal(self, c: SQLiteCursor, seals: EventSeals, positions: range,
              stored_events: Sequence[StoredEvent]) -> None:
        """Store the write's seals (ledger/eventseals.py). A position given again (the store's
        last events deleted, then accepted by a rebuild) takes the new event's seal."""
        c.executemany(f"INSERT INTO {SEALS_TABLE} (position, mac) VALUES (?, ?) ON CONFLICT "
                      "(position) DO UPDATE SET mac = excluded.mac",
                      seals.seals(positions, stored_events))

    def _ready_to_seal(self, seals: EventSeals) -> None:
        """Before this process's first write: the key loaded, and checked against the store's
        last sealed event (eventseals.py `for_writing`)."""
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {self.events_table_name})")
            empty = not cursor.fetchone()[0]
            cursor.execute(
                f"SELECT e.rowid, e.originator_id, e.originator_version, e.topic, e.state, "
                f"s.mac FROM {SEALS_TABLE} s JOIN {self.events_table_name} e ON e.rowid = "
                "s.position ORDER BY s.position DESC LIMIT 1")
            seals.for_writing(empty, cursor.fetchone())

    def store_id(self, make: bool = False) -> str | None:
        """The store's own random id (ledger/eventseals.py: the seal key is this store's),
        made by the first writer that needs it (`make`; not when the tables are made: a
        read-only file must still open); None when there is none yet."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"SELECT store_id FROM {STORE_TABLE} WHERE one = 1")
            row = c.fetchone()
            if row is not None:
                return str(row["store_id"])
            if not make:
                return None
            c.execute(f"SELECT EXISTS (SELECT 1 FROM {SEALS_TABLE}) AS sealed")
            made = new_store_id(bool(c.fetchone()["sealed"]))
            c.execute(f"INSERT INTO {STORE_TABLE} (one, store_id) VALUES (1, ?) ON CONFLICT "
                      "(one) DO NOTHING", (made,))
            c.execute(f"SELECT store_id FROM {STORE_TABLE} WHERE one = 1")
            return str(c.fetchone()["store_id"])

    def store_seals(self, rows: Sequence[tuple[int, bytes]]) -> None:
        """Seal stored events (`vledger seal`: a store written before seals)."""
        with self.datastore.transaction(commit=True) as c:
            c.executemany(f"INSERT INTO {SEALS_TABLE} (position, mac) VALUES (?, ?) ON "
                          "CONFLICT (position) DO UPDATE SET mac = excluded.mac", rows)

    def unsealed_positions(self, limit: int) -> tuple[int, list[int]]:
        """How many stored events have no seal row, and the first `limit` of their
        positions."""
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            missing = (f"FROM {self.events_table_name} e WHERE NOT EXISTS (SELECT 1 FROM "
                       f"{SEALS_TABLE} s WHERE s.position = e.rowid)")
            cursor.execute(f"SELECT COUNT(*) {missing}")
            count = int(cursor.fetchone()[0])
            cursor.execute(f"SELECT e.rowid {missing} ORDER BY e.rowid LIMIT ?", (limit,))
            return count, [int(p) for (p,) in cursor.fetchall()]

    def accept_positions(self) -> None:
        """Take the store's events as they are now: the next write gives the position after
        the last one left (`vledger projections rebuild` of every view, which counts only
        what is there)."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {POSITIONS_TABLE}")

    def select_keys(self, ids: Collection[str]) -> dict[str, bytes]:
        """The stored keys among `ids`, unwrapped (an erased number's key is not among them)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT key_id, key, kek_id FROM {KEYS_TABLE} WHERE {_ONE_OF_KEYS}",
                      (values_of(sorted(ids), postgres=False),))
            rows = c.fetchall()
        return {row[0]: self.ring.unwrap(row[0], row[2], bytes(row[1])) for row in rows}

    def select_rows(self, start: int, limit: int, stop: int | None = None) -> list[EventRow]:
        """The events `select_notifications(start, limit, stop)` answers, as plain tuples.

        The library builds an `sqlite3.Row` and a `Notification` for each event, which the read
        side then unwraps: 3 µs an event, more than half of reading a page (96k events: 0.53
        against 0.23 s), and the ceiling of every rebuild."""
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM "
                f"{self.events_table_name} WHERE rowid >= ? AND rowid <= ? ORDER BY rowid "
                "LIMIT ?", (start, LAST_POSITION if stop is None else stop, limit))
            rows: list[EventRow] = cursor.fetchall()
            return rows

    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        changes = current_key_changes()
        if changes is not None and changes.added:
            self.ring.current()  # read again, before the transaction, after a refused write
        if self.seals is not None and not self.seals.ready:
            self._ready_to_seal(self.seals)
        try:
            ids = super().insert_events(stored_events, **kwargs)
        except KekRetired:
            self.ring.stale = True  # the retry reads which KEK is current now
            raise
        if changes is not None and changes.erased:
            self._erased_in_wal, self._next_try = True, 0.0
        if self._erased_in_wal and time.monotonic() >= self._next_try:
            self.forget_erased()
        return ids

    def forget_erased(self, wait_ms: int = ERASURE_CHECKPOINT_WAIT_MS) -> bool:
        """After keys were deleted: copy the WAL into the database file and truncate it, so the
        WAL's older copies of the keys' pages go too (bb21 F2: on a quiet ledger they stayed
        there, and in any copy of the files, for as long as no checkpoint ran). Waits at most
        `wait_ms` for readers still using the WAL; if they hold it longer, the first write after
        a pause (or the ledger's close) tries again. Whether the WAL was emptied."""
        if not self._erased_in_wal:
            return True
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("PRAGMA busy_timeout")
            (before,) = cursor.fetchone()
            cursor.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
            try:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                busy, _, _ = cursor.fetchone()
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(before)}")
        self._erased_in_wal = bool(busy)
        # A reader holding the WAL that long is rare (a long report, a backup): later writes
        # do not each wait for it again, but try again after a pause.
        self._next_try = time.monotonic() + ERASURE_RETRY_SECONDS
        if busy:
            log.warning("erased keys stay in the WAL file until readers let a checkpoint "
                        "through; a later write tries again")
        return not busy

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        guard = current_guard()
        if guard is not None:
            if guard.unchanged:
                check_unchanged(guard, c, self.events_table_name)
            check_tail(guard, c, self.events_table_name, postgres=False)
        self._check_positions_kept(c)
        # One statement for the write's events, where the library runs one per event to read
        # each one's rowid: one writer at a time holds the file (and ours hold the write
        # turn), so the write's events took the positions up to the greatest one, in order.
        c.executemany(self.insert_events_statement, [
            (s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
             s.originator_version, s.topic, s.state) for s in stored_events])
        c.execute(f"SELECT MAX(rowid) AS top FROM {self.events_table_name}")
        top = int(c.fetchone()["top"])
        positions = range(top - len(stored_events) + 1, top + 1)
        c.execute(f"INSERT INTO {POSITIONS_TABLE} (one, last) VALUES (1, ?) ON CONFLICT (one) "
                  "DO UPDATE SET last = excluded.last", (top,))
        if self.seals is not None:
            self._seal(c, self.seals, positions, stored_events)
        # The write's keys (ledger/sealing.py), once its events are in: a refused insert
        # raises above, and the transaction rolls back whatever this write did.
        changes = current_key_changes()
        if changes is not None:
            if changes.added:
                # Only under a KEK the store still lists (ledger/keytable.py: the foreign key,
                # checked here): one a rotation deleted refuses the write, which runs again.
                kek_id = self.ring.current()
                c.executemany(f"INSERT INTO {KEYS_TABLE} (key_id, key, kek_id) SELECT ?, ?, "
                              f"kek_id FROM {KEKS_TABLE} WHERE kek_id = ?",
                              [(key_id, self.ring.wrap(key_id, key, kek_id)[1], kek_id)
                               for key_id, key in changes.added.items()])
                if c.sqlite_cursor.rowcount < len(changes.added):
                    raise KekRetired(f"KEK {kek_id} was retired by a rotation; nothing of "
                                         "this write was stored")
            if changes.erased:
                # Overwrite a deleted key's bytes in the file's pages, not just unlink them
                # (SQLite leaves deleted rows in free space); the WAL's older copy of the page
                # goes with the truncation after the commit (insert_events).
                c.execute("PRAGMA secure_delete = ON")
                c.execute(f"DELETE FROM {KEYS_TABLE} WHERE {_ONE_OF_KEYS}",
                          (values_of(sorted(changes.erased), postgres=False),))
        return list(positions)
