"""Loading many aggregates with one statement: each one's latest snapshot and the events after it.

The library's repository asks the store twice per aggregate (its snapshots, then its events),
each time in a transaction of its own; a batch of 2,000 sessions touching 1,800 volunteers spent
most of its time there. One statement also reads the snapshot and the events after it from one
consistent view of the store, so a snapshot taken in between cannot hide events.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from eventsourcing.persistence import Mapper, StoredEvent

from ledger.errors import StoreAltered
from ledger.sql import one_of, values_of
from ledger.vouching import EventCheck, SnapshotSeal

log = logging.getLogger("vledger.ledger")
UNVOUCHED_KEPT = 100_000  # ids remembered for a new snapshot (each a few dozen bytes)


def usable_id(aggregate_id: str) -> bool:
    """Whether an id could be stored at all (PostgreSQL text refuses NUL; ids are short)."""
    return bool(aggregate_id) and "\x00" not in aggregate_id and len(aggregate_id) <= 400


class Loader:
    """Reads the stored events (and latest snapshots) of many originators at once."""

    def __init__(self, datastore: Any, postgres: bool, events_table: str,
                 snapshots_table: str | None, schema: str = "public") -> None:
        self.datastore = datastore
        self.postgres = postgres
        # What a write may build on (ledger/vouching.py), set by `LedgerBase.vouch`: None
        # trusts the store as it stands.
        self.check: EventCheck | None = None
        self.seal: SnapshotSeal | None = None
        # Ids replayed past a snapshot the seal did not vouch for: snapshotted at their next
        # save, so that loading them costs a full replay once, not until the next interval.
        self.unvouched: set[str] = set()
        # Snapshots (id, version) whose MAC did not match: changed in the store, or sealed
        # under another key.
        self.forged: set[tuple[str, int]] = set()

        def table(name: str) -> str:
            return f'"{schema}"."{name}"' if postgres else f'"{name}"'

        # One id's stored version, `?` for the id, for a caller with its own connection
        # (the API checks a presented token's grant with it: api/deps.py).
        self.version_statement = (f"SELECT MAX(originator_version) FROM {table(events_table)} "
                                  "WHERE originator_id = ?")
        # A snapshot stored, and its aggregate's older ones deleted: loading reads only the
        # latest, and a volunteer's grows with their sessions, so keeping every one grew as the
        # square of their sessions. (The library's PostgreSQL recorder sends snapshots as an
        # array of a composite type, escaped in Python: 130 ms for a 1.4 MB one.)
        mark = "%s" if postgres else "?"
        self.snapshot_statements = (
            f"INSERT INTO {table(snapshots_table)} (originator_id, originator_version, topic, "
            f"state) VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT DO NOTHING",
            f"DELETE FROM {table(snapshots_table)} WHERE originator_id = {mark} "
            f"AND originator_version < {mark}") if snapshots_table else None
        # How many events the store holds at or below a position (a server's start compares
        # it with the audit log's leaves: projections/audit.py `logged_events_gone`).
        self.count_statement = (
            f"SELECT COUNT(*) AS n FROM {table(events_table)} WHERE "
            f"{'notification_id' if postgres else 'rowid'} <= {mark}")
        # The topic of an id's first event: what kind of aggregate it is, without loading it.
        self.created_statement = (f"SELECT topic FROM {table(events_table)} "
                                  f"WHERE originator_id = {mark} AND originator_version = 1")
        # Each stored event's position, by id and version (the topic tells what it was).
        self.positions_statement = (
            f"SELECT w.id AS originator_id, e.originator_version, e.topic, e.notification_id "
            f"FROM unnest(%s::text[]) AS w(id) CROSS JOIN LATERAL (SELECT originator_version, "
            f"topic, notification_id FROM {table(events_table)} y WHERE y.originator_id = w.id) e"
            if postgres else
            f"SELECT originator_id, originator_version, topic, rowid AS notification_id "
            f"FROM {table(events_table)} WHERE {one_of('originator_id', postgres=False)}")
        if postgres:
            self._postgres_statements(table(events_table),
                                      table(snapshots_table) if snapshots_table else None)
            return
        # One index seek per id, as on PostgreSQL below. `originator_id IN (…)` with GROUP BY
        # or a join on the latest snapshot read every event of an id and filtered them after:
        # 3.3 ms for the version of a volunteer with 20,000 sessions, asked before each write
        # that reuses a kept aggregate, and 18 ms to load them (bb23 F4).
        ids = "json_each(?) w"
        self.versions_statement = (
            f"SELECT originator_id, version FROM (SELECT w.value AS originator_id, "
            f"(SELECT MAX(y.originator_version) FROM {table(events_table)} y "
            f"WHERE y.originator_id = w.value) AS version FROM {ids}) WHERE version IS NOT NULL")
        events = table(events_table)
        # Every row also gives its event's position (0 for a snapshot), which the leaf check
        # needs (ledger/vouching.py); every event of each id: replaying past a snapshot.
        self.replay_statement = (
            f"SELECT e.originator_id, e.originator_version, e.topic, e.state, 1 AS kind, "
            f"e.rowid AS position FROM {ids} JOIN {events} e ON e.originator_id = w.value "
            f"ORDER BY 1, 2")
        if snapshots_table is None:
            self.statement = self.replay_statement
            self.marks = 1
            return
        snapshots = table(snapshots_table)
        self.statement = (
            f"WITH latest AS (SELECT w.value AS id, (SELECT MAX(x.originator_version) "
            f"FROM {snapshots} x WHERE x.originator_id = w.value) AS version FROM {ids}) "
            f"SELECT s.originator_id, s.originator_version, s.topic, s.state, 0 AS kind, "
            f"0 AS position FROM latest l JOIN {snapshots} s ON s.originator_id = l.id "
            f"AND s.originator_version = l.version "
            f"UNION ALL SELECT e.originator_id, e.originator_version, e.topic, e.state, 1, "
            f"e.rowid FROM latest l JOIN {events} e ON e.originator_id = l.id "
            f"AND e.originator_version > COALESCE(l.version, 0) "
            f"ORDER BY 1, 5, 2")
        self.marks = 1

    def _postgres_statements(self, events: str, snapshots: str | None) -> None:
        """The same statements for PostgreSQL, written as one index lookup per id.

        `originator_id = ANY(%s)` leaves the plan to the table's statistics. Without them (a
        server with autovacuum off, or a table filled faster than it runs) the planner guessed
        thousands of rows per id and scanned the whole log: 1.6 s per batch at 3.9M events,
        where the lookups take 0.07 s. A LATERAL subquery per id is planned as an index scan
        on the primary key whatever the statistics say.
        """
        ids = "unnest(%s::text[]) AS w(id)"

        def events_after(after: str) -> str:
            return (
                f"SELECT e.originator_id, e.originator_version, e.topic, e.state, 1 AS kind, "
                f"e.notification_id AS position FROM {ids} CROSS JOIN LATERAL (SELECT "
                f"originator_id, originator_version, topic, state, notification_id "
                f"FROM {events} y WHERE y.originator_id = w.id "
                f"AND y.originator_version > {after}) e")

        self.replay_statement = events_after("0") + " ORDER BY 1, 2"
        self.versions_statement = (
            f"SELECT originator_id, version FROM (SELECT w.id AS originator_id, "
            f"(SELECT MAX(y.originator_version) FROM {events} y WHERE y.originator_id = w.id) "
            f"AS version FROM {ids}) v WHERE version IS NOT NULL")
        if snapshots is None:
            self.statement = self.replay_statement
            self.marks = 1
            return
        after = (f"COALESCE((SELECT MAX(x.originator_version) FROM {snapshots} x "
                 f"WHERE x.originator_id = w.id), 0)")
        self.statement = (
            f"SELECT s.originator_id, s.originator_version, s.topic, s.state, 0 AS kind, "
            f"0::bigint AS position FROM {ids} CROSS JOIN LATERAL (SELECT originator_id, "
            f"originator_version, topic, state FROM {snapshots} x WHERE x.originator_id = w.id "
            f"ORDER BY originator_version DESC LIMIT 1) s "
            f"UNION ALL {events_after(after)} ORDER BY 1, 5, 2")
        self.marks = 2

    def _rows(self, statement: str, marks: int, ids: Collection[str]) -> list[Any]:
        """The rows of a statement whose `marks` parameters are all the (usable) ids."""
        wanted = sorted({i for i in ids if usable_id(i)})
        if not wanted:
            return []
        with self.datastore.transaction(commit=False) as cur:
            cur.execute(statement, [values_of(wanted, self.postgres)] * marks)
            return list(cur.fetchall())

    def stored(self, ids: Collection[str]) -> list[StoredEvent]:
        """The latest snapshot (if any) and later events of each id, grouped by id, in order."""
        wanted = sorted({i for i in ids if usable_id(i)})
        if not wanted:
            return []
        with self.datastore.transaction(commit=False) as cur:
            return [stored for stored, _ in self._fetch(cur, self.statement, self.marks,
                                                        wanted)]

    def _fetch(self, cur: Any, statement: str, marks: int,
               wanted: list[str]) -> list[tuple[StoredEvent, int]]:
        """Rows of `statement` or `replay_statement` for some ids: each stored event (or
        snapshot) and its position (0 for a snapshot)."""
        cur.execute(statement, [values_of(wanted, self.postgres)] * marks)
        return [(StoredEvent(originator_id=row["originator_id"],
                             originator_version=row["originator_version"],
                             topic=row["topic"], state=state_bytes(row["state"])),
                 int(row["position"]))
                for row in cur.fetchall()]

    def positions(self, ids: Collection[str],
                  topic: str | None = None) -> dict[str, dict[int, int]]:
        """The position of each stored event (of one topic, if given) of each id, by version."""
        found: dict[str, dict[int, int]] = {}
        for row in self._rows(self.positions_statement, 1, ids):
            if topic is None or row["topic"] == topic:
                found.setdefault(str(row["originator_id"]), {})[
                    int(row["originator_version"])] = int(row["notification_id"])
        return found

    def store_snapshots(self, snapshots: Sequence[StoredEvent]) -> None:
        """Store snapshots and delete their aggregates' older ones, in one transaction."""
        if self.snapshot_statements is None or not snapshots:
            return
        if self.seal is not None:
            snapshots = [self.seal.seal(s) for s in snapshots]
        insert, prune = self.snapshot_statements
        with self.datastore.transaction(commit=True) as cur:
            cur.executemany(insert, [(s.originator_id, s.originator_version, s.topic, s.state)
                                     for s in snapshots])
            cur.executemany(prune, [(s.originator_id, s.originator_version) for s in snapshots])

    def count_up_to(self, position: int) -> int:
        """How many events the store holds at or below `position`."""
        with self.datastore.transaction(commit=False) as cur:
            cur.execute(self.count_statement, [position])
            row = cur.fetchone()
        return int(row["n"])

    def created_topic(self, aggregate_id: str) -> str | None:
        """The topic of an id's first event (None when nothing is stored under it)."""
        if not usable_id(aggregate_id):
            return None
        with self.datastore.transaction(commit=False) as cur:
            cur.execute(self.created_statement, [aggregate_id])
            row = cur.fetchone()
        return None if row is None else str(row["topic"])

    def versions(self, ids: Collection[str]) -> dict[str, int]:
        """The stored version of each id that has events."""
        return {str(row["originator_id"]): int(row["version"])
                for row in self._rows(self.versions_statement, 1, ids)}

    def load(self, ids: Collection[str], mapper: Mapper[Any],
             replay: Callable[[Any, Iterable[Any]], Any]) -> dict[str, Any]:
        """Each found id's aggregate, replayed from its latest snapshot and the events after.

        With a `seal`, a snapshot it does not vouch for is passed over and its aggregate
        replayed from its first event (one more statement for all such ids); with a `check`,
        every event read is then given to it at once, and it refuses (StoreAltered) one that
        is not as the audit log took it in. Events newer than the log cannot be checked: they
        pass (ledger/vouching.py)."""
        wanted = sorted({i for i in ids if usable_id(i)})
        if not wanted:
            return {}
        found: dict[str, list[tuple[StoredEvent, int]]] = {}
        # One transaction: the check's query goes on the same connection (on PostgreSQL, one
        # round trip more, where a connection of the views' pool cost four).
        with self.datastore.transaction(commit=False) as cur:
            for row in self._fetch(cur, self.statement, self.marks, wanted):
                found.setdefault(str(row[0].originator_id), []).append(row)
            unvouched = sorted(oid for oid, rows in found.items()
                               if rows[0][1] == 0 and not self._vouched(rows[0][0]))
            if unvouched:
                for oid in unvouched:
                    del found[oid]
                for row in self._fetch(cur, self.replay_statement, 1, unvouched):
                    found.setdefault(str(row[0].originator_id), []).append(row)
                if len(self.unvouched) < UNVOUCHED_KEPT:  # sealed again by their next save
                    self.unvouched.update(unvouched)
            for oid, rows in found.items():
                _check_unbroken(oid, rows)
            events = [(position, stored) for rows in found.values()
                      for stored, position in rows if position]
            if self.check is not None:
                def query(statement: str, params: Sequence[Any]) -> list[Any]:
                    cur.execute(statement, params)
                    return list(cur.fetchall())

                # Also the ids with nothing stored: a record whose every event was deleted.
                held = {oid: rows[-1][0].originator_version for oid, rows in found.items()}
                self.check(events, {oid: held.get(oid, 0) for oid in wanted}, query)
        return {oid: replay(None, [mapper.to_domain_event(stored) for stored, _ in rows])
                for oid, rows in found.items()}

    def _vouched(self, snapshot: StoredEvent) -> bool:
        """Whether a snapshot may stand for its events: any, without a seal (the store is
        trusted); with one, only one sealed under its key."""
        if self.seal is None:
            return True
        vouches = self.seal.vouches(snapshot)
        key = (str(snapshot.originator_id), snapshot.originator_version)
        if vouches is False and key not in self.forged:
            # Once per snapshot and process (bb36 F9: logged again on every load), and
            # counted for /metrics (`vledger_snapshots_refused`).
            if len(self.forged) < UNVOUCHED_KEPT:
                self.forged.add(key)
            log.warning("the snapshot of %s at version %d does not carry this key's MAC "
                        "(changed in the store, or sealed under another key): replayed from "
                        "its events instead", snapshot.originator_id,
                        snapshot.originator_version)
        return bool(vouches)


def _check_unbroken(oid: str, rows: Sequence[tuple[StoredEvent, int]]) -> None:
    """Refuse (StoreAltered) an aggregate whose events skip a version: one of them was deleted
    from the store by hand (bb36 F3: replaying around the hole failed as a bare 500). The
    first row is its snapshot (position 0) or its first event, version 1."""
    expected = rows[0][0].originator_version if rows[0][1] == 0 else 1
    for stored, position in rows:
        if stored.originator_version != expected and position:
            raise StoreAltered(oid, position, (
                f"its events from version {expected} to {stored.originator_version - 1} are "
                f"gone from the store (the next, at position {position}, is version "
                f"{stored.originator_version}): deleted by hand after they were recorded; run "
                "vledger verify, and restore them from a backup"))
        expected = stored.originator_version + 1


def state_bytes(state: bytes | memoryview | str) -> bytes:
    """A stored state as bytes, as the audit log hashes it. SQLite hands back TEXT where a
    hand edit (`replace()` in its shell) turned the BLOB into text: its UTF-8 bytes, lone
    surrogates kept, are what is hashed and compared (projections/feed.py reads it so too)."""
    if isinstance(state, str):
        return state.encode("utf-8", "surrogatepass")
    return bytes(state)


class Kept:
    """Aggregates a batch saved (or loaded and left unchanged), kept for the next batch.

    Each is lent to one batch at a time: `take` removes what it returns, and only a batch that
    saved gives its aggregates back, so a failed or concurrent batch never sees another's
    half-made changes and no copy is needed. A taken aggregate whose stored version moved on
    (another process wrote) is dropped and loaded again.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, ids: Iterable[str]) -> dict[str, Any]:
        with self._lock:
            return {i: self._items.pop(i) for i in ids if i in self._items}

    def clear(self) -> None:
        """Keep nothing (what was kept was loaded under rules that no longer hold)."""
        with self._lock:
            self._items.clear()

    def give(self, aggregates: Iterable[Any]) -> None:
        with self._lock:
            for aggregate in aggregates:
                self._items[aggregate.id] = aggregate
                self._items.move_to_end(aggregate.id)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
