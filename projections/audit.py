"""The tamper-evident log: an RFC 9162 Merkle tree over every stored event, in position order.

Leaf i (0-based) is the i-th event in position order; positions may have gaps (PostgreSQL), so
the leaf index is not the position. The leaf input is these bytes, all integers big-endian
unsigned, all text UTF-8, every field taken from the event feed (`GET /v1/events`):

    0x01                                   format version (1 byte)
    position                               8 bytes
    len(originator_id)  originator_id      4 bytes + the id
    originator_version                     8 bytes (the feed's `version`)
    len(topic)  topic                      4 bytes + e.g. "ledger.sessions:ServiceSession.Recorded"
    len(state)  state                      4 bytes + the stored event bytes (the feed's `state`,
                                           base64-decoded), exactly as the store holds them

`leaf_hash = SHA-256(0x00 || leaf)`, inner nodes `SHA-256(0x01 || left || right)`
(projections/merkle.py). Checkpoints are signed as described in projections/signing.py.
The view keeps every leaf hash and the hash of every complete power-of-two block of at least
2**STORED_LEVEL leaves; smaller blocks are recomputed from their (at most 8) leaves when a proof
needs them. A root or proof for any tree size reads O(log² n) rows in two queries, and the view
writes about 1.07 rows per event instead of 2.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ledger.errors import (
    AuditLogAltered,
    InvalidField,
    StoreAltered,
    changed_after_logging_message,
)
from ledger.eventseals import SEALS_TABLE, EventSeals, leaf_bytes, unsealed_message
from ledger.loading import state_bytes
from projections.checkpoint_file import CheckpointFile
from projections.feed import FeedEvent, decode, read_events
from projections.merkle import (
    Frontier,
    NodeGetter,
    consistency_proof,
    inclusion_path,
    leaf_hash,
    node_hash,
    recompute_root,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)
from projections.runner import LOCK_NAME
from projections.signing import SigningKey, checkpoint_message, verify_checkpoint
from projections.store import ViewCursor, ViewStore, table_names
from projections.tally import without_rowid

__all__ = [
    "AuditLog", "Auditor", "SigningKey", "event_leaf_hash", "leaf_bytes", "recompute_root",
    "verify_checkpoint", "verify_consistency", "verify_inclusion",
]

T = TypeVar("T")
log = logging.getLogger("vledger.audit")
_PLACEHOLDER = bytes(32)
# Blocks of 2, 4 and 8 leaves are not stored: they are 7/8 of all inner nodes, and rehashing
# at most 8 leaf hashes is cheaper than writing and reading their rows.
STORED_LEVEL = 4
# How long a probe's answer of whether the log extends the published checkpoint is remembered
# while the audit log stays at one position (Auditor.refusal).
RECHECK_SECONDS = 5.0


def event_leaf_hash(event: FeedEvent) -> bytes:
    """The Merkle leaf hash of one stored event."""
    return leaf_hash(leaf_bytes(event.position, event.originator_id, event.version,
                                event.topic, event.state))


def notification_leaf_hash(n: Any) -> bytes:
    """`event_leaf_hash` of a notification as the recorder gives it, without wrapping it in a
    FeedEvent first (a verification hashes every event of the store)."""
    return leaf_hash(leaf_bytes(n.id, str(n.originator_id), n.originator_version, n.topic,
                                state_bytes(n.state)))


def refuse_unsealed(cur: ViewCursor, seals: EventSeals,
                    events: Sequence[tuple[int, bytes]]) -> None:
    """Refuse (AuditLogAltered) events (position, leaf input; in position order) that carry
    no seal of the ledger's key (ledger/eventseals.py): written by hand."""
    bad = unsealed_among(cur, seals, events)
    if bad:
        raise AuditLogAltered(unsealed_message(bad))


def unsealed_among(cur: ViewCursor, seals: EventSeals, events: Sequence[tuple[int, bytes]],
                   rowless: list[int] | None = None,
                   written: list[int] | None = None) -> list[int]:
    """The positions among `events` (position, leaf input; in position order) that carry no
    seal of the ledger's key; those with no seal row at all are added to `rowless`, and those
    sealed by a write of this version (not by `vledger seal`) to `written`."""
    if not events:
        return []
    if len(events) == 1 or events[-1][0] - events[0][0] < 4 * len(events):  # a run: a range
        rows = cur.execute(f"SELECT position, mac FROM {SEALS_TABLE} WHERE position BETWEEN "
                           "? AND ?", (events[0][0], events[-1][0]))
    else:
        condition, values = cur.one_of("position", [p for p, _ in events])
        rows = cur.execute(f"SELECT position, mac FROM {SEALS_TABLE} WHERE {condition}",
                           (values,))
    macs = {int(p): bytes(m) for p, m in rows.fetchall()}
    bad, made = seals.classify(events, macs)
    if rowless is not None:
        rowless += [p for p in bad if p not in macs]
    if written is not None:
        written += made
    return bad


class AuditLog:
    """The projection that appends one leaf per event and keeps complete subtree hashes; with
    `seals` (ReadModels sets the ledger's), it takes in no event written without the ledger's
    seal (ledger/eventseals.py): its page is refused, so no view counts it."""

    name = "audit"
    schema_version = 2
    seals: EventSeals | None = None

    def create(self, cur: ViewCursor) -> None:
        blob = "BYTEA" if cur.postgres else "BLOB"
        # On SQLite an INTEGER PRIMARY KEY is the rowid itself: one B-tree fewer to write.
        index = "BIGINT" if cur.postgres else "INTEGER"
        cur.execute(f"CREATE TABLE IF NOT EXISTS audit_leaves (leaf_index {index} PRIMARY KEY, "
                    f"position BIGINT NOT NULL UNIQUE, leaf_hash {blob} NOT NULL)")
        cur.execute("CREATE TABLE IF NOT EXISTS audit_nodes (level INTEGER NOT NULL, "
                    f"idx BIGINT NOT NULL, hash {blob} NOT NULL, PRIMARY KEY (level, idx))")

    def drop(self, cur: ViewCursor) -> None:
        cur.execute("DROP TABLE IF EXISTS audit_nodes")
        cur.execute("DROP TABLE IF EXISTS audit_leaves")

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        read = cur.execute("SELECT position FROM projection_positions WHERE name = ?",
                           (self.name,)).fetchone()
        size, last = log_end(cur)
        altered = leaves_altered(cur, int(read[0]) if read else 0, end=(size, last))
        if altered:  # appending would sign a tree that leaves out (or makes up) events
            raise AuditLogAltered(altered)
        found = fetch_nodes(cur, Frontier.blocks(size))
        frontier = Frontier((lv, i, found[lv, i]) for lv, i in Frontier.blocks(size))
        data = [leaf_bytes(e.position, e.originator_id, e.version, e.topic, e.state)
                for e in events]
        if self.seals is not None:
            refuse_unsealed(cur, self.seals,
                            [(e.position, d) for e, d in zip(events, data, strict=True)])
        hashes = [leaf_hash(d) for d in data]
        leaves = [(size + i, event.position, h)
                  for i, (event, h) in enumerate(zip(events, hashes, strict=True))]
        nodes = [n for n in frontier.extend(hashes) if n[0] >= STORED_LEVEL]
        insert_rows(cur, "audit_leaves (leaf_index, position, leaf_hash)", leaves)
        insert_rows(cur, "audit_nodes (level, idx, hash)", nodes)


class LoggedVersions:
    """The last version of each record the audit log took in (`logged_versions`).

    A write loads the records it builds on; when the store holds fewer versions of one than
    were logged, its last events were deleted by hand, and the write would take their
    versions again: a session deleted with its volunteer's last booking was recorded anew
    and counted twice by the views that had read it (bb38 F1). The leaf check refuses that
    (projections/vouching.py). Kept beside the log, in its transaction, never behind it.
    """

    name = "versions"
    schema_version = 1

    def create(self, cur: ViewCursor) -> None:
        cur.execute(without_rowid(
            "CREATE TABLE IF NOT EXISTS logged_versions (originator_id TEXT PRIMARY KEY, "
            "version BIGINT NOT NULL)", cur.postgres))

    def drop(self, cur: ViewCursor) -> None:
        cur.execute("DROP TABLE IF EXISTS logged_versions")

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        last: dict[str, int] = {}
        for event in events:  # in position order: each record's versions only grow
            last[event.originator_id] = event.version
        cur.executemany(
            "INSERT INTO logged_versions (originator_id, version) VALUES (?, ?) "
            "ON CONFLICT (originator_id) DO UPDATE SET version = excluded.version "
            "WHERE excluded.version > logged_versions.version", sorted(last.items()))


def insert_rows(cur: ViewCursor, into: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert many rows in one statement (arrays unnested on PostgreSQL, see ViewCursor)."""
    if rows:
        marks = "(" + ", ".join("?" * len(rows[0])) + ")"
        cur.executemany(f"INSERT INTO {into} VALUES {marks}", rows)


def log_end(cur: ViewCursor) -> tuple[int, int]:
    """How many leaves the audit log holds, and the position of its last (0 for none)."""
    # Two subqueries: SQLite reads one MAX from an index, but both in one SELECT scanned the
    # whole table (15 ms a write at 98k events).
    row = cur.execute("SELECT (SELECT MAX(leaf_index) FROM audit_leaves), "
                      "(SELECT MAX(position) FROM audit_leaves)").fetchone()
    size = 0 if row is None or row[0] is None else int(row[0]) + 1
    return size, 0 if row is None or row[1] is None else int(row[1])


def leaves_altered(cur: ViewCursor, read_to: int, count: bool = False,
                   end: tuple[int, int] | None = None) -> str | None:
    """Whether the audit log's leaves are not those of the events its view has read to
    `read_to`: its last leaf must be that event's (bb26 F1: a deleted last leaf was taken as
    lag, and the next event was logged in its place). With `count`, also every leaf index
    below the last one must be there (a full count: for a start or a verification). `end`:
    `log_end`, if the caller has read it already."""
    size, last = end or log_end(cur)
    fix = ("compare the store with a backup; `vledger verify` names what no longer matches, "
           "and `vledger projections rebuild audit` logs every event again")
    if last != read_to:
        return (f"the audit log's last leaf is for position {last}, but its view has read to "
                f"position {read_to}: leaves were deleted or added by hand; {fix}")
    if count:
        held = cur.execute("SELECT COUNT(*) FROM audit_leaves").fetchone()
        if held is not None and int(held[0]) != size:
            return (f"the audit log holds {int(held[0])} leaves, but its leaf indexes run to "
                    f"{size - 1}: leaves were deleted by hand; {fix}")
    return None


def altered_log(store: ViewStore) -> str | None:
    """Whether the audit log's leaves are not those of the events its view has read (see
    `leaves_altered`), counting them all: before a server starts, and in `vledger verify`."""
    with store.reading() as cur:
        if not {"projection_positions", "audit_leaves"} <= table_names(cur):
            return None
        row = cur.execute("SELECT position FROM projection_positions WHERE name = ?",
                          (AuditLog.name,)).fetchone()
        return None if row is None else leaves_altered(cur, int(row[0]), count=True)


def logged_events_gone(store: ViewStore, count_events: Callable[[int], int]) -> str | None:
    """Before a server starts: whether events the audit log took in are gone from the store,
    or events below its last position were added that it never took in, found by counting
    (`count_events(position)`: the stored events at or below it). The views' position shows
    only a deletion at the end; one from the middle started a server as if nothing had
    happened (bb36 F4)."""
    with store.reading() as cur:
        if "audit_leaves" not in table_names(cur):
            return None
        size, last = log_end(cur)
    if not last:
        return None
    stored = count_events(last)
    if stored == size:
        return None
    how = (f"{size - stored} of the {size} events the audit log took in (up to position "
           f"{last}) are gone from the store: deleted by hand" if stored < size else
           f"the store holds {stored - size} more events up to position {last} than the "
           "audit log took in: added by hand")
    return (f"{how}; `vledger verify` names them. Restore the store from a backup taken "
            "before; the audit log and its published checkpoints keep the evidence, so "
            "`vledger projections rebuild` will not fold the changed store")


def unsealed_events(store: ViewStore, recorder: Any, seals: EventSeals,
                    past_the_log: int = 10_000, logged_too: bool = True) -> str | None:
    """Before a server starts: whether the store holds events without the ledger's seal
    (ledger/eventseals.py): any without a seal row (counted: a store written before seals, or
    events written or seals deleted by hand), or, among the first `past_the_log` events the
    audit log has not taken in, one whose seal does not match. (Events the log took in were
    checked when it took them in, and are vouched for by their leaves.) Without `logged_too`,
    only the events the log has not taken in (a rebuild of views other than the log).)"""
    missing = getattr(recorder, "unsealed_positions", None)
    if missing is None:
        return None
    try:  # bb41 F5: the store's id deleted, while its events are sealed
        recorder.store_id(True)
    except StoreAltered as gone:
        return str(gone)
    with store.reading() as cur:
        logged_to = log_end(cur)[1] if store.has_table(cur, "audit_leaves") else 0
        found = cur.execute(f"SELECT EXISTS (SELECT 1 FROM {SEALS_TABLE})").fetchone()
        sealed = bool(found and found[0])
    count, first = missing(3) if logged_too else (0, [])
    if count:
        shown = ", ".join(map(str, first))
        why = ("The store's other events are sealed: these were written by hand (or their "
               "seals deleted). `vledger seal` seals those a checkpoint signed with the "
               "store's key vouches for, and names the rest: delete those, then rebuild "
               "every view (`vledger projections rebuild`)" if sealed else
               "The store was written by a version before event seals: `vledger seal` seals, "
               "once, the events a checkpoint signed with the store's key vouches for (see the "
               "README on upgrading)")
        return f"{count} stored event(s) carry no seal (first at position(s) {shown}). {why}"
    events = read_events(recorder, logged_to + 1, past_the_log)
    if not events:
        return None
    with store.reading() as cur:
        bad = unsealed_among(cur, seals, [
            (e.position, leaf_bytes(e.position, e.originator_id, e.version, e.topic, e.state))
            for e in events])
    return unsealed_message(bad) if bad else None


def unextended_checkpoint(store: ViewStore, key_file: Path) -> str | None:
    """Before a server starts: why its audit log does not extend the checkpoint the store last
    published, or the one kept beside the signing key (None when it does, or when none was
    published). A server on such a log would take writes and log them on a tree that
    contradicts what it signed (bb33 F4, F5): subtree hashes deleted, leaves changed with their
    events, the signing key replaced, the published checkpoints deleted (bb38 F11). It reads
    the O(log n) subtree hashes of the published size, not every event (`vledger verify`
    does)."""
    published = Auditor.last_published(store)
    kept = CheckpointFile(key_file, store.location)
    if published is None and not kept.path.exists():
        return None
    if not key_file.exists():
        try:
            held = kept.read()
        except AuditLogAltered as unreadable:
            return str(unreadable)
        signed = published or held
        if signed is None:
            return None
        return (f"the store's checkpoints are signed with key {signed['key_id']}, and there "
                f"is no key file at {key_file}: set VLEDGER_SIGNING_KEY_FILE to the store's "
                "signing key")
    try:
        Auditor(store, SigningKey.load(key_file)).check_published()
    except AuditLogAltered as altered:
        return str(altered)
    return None


def unkept_checkpoint(store: ViewStore, key_file: Path) -> str | None:
    """Before a server starts (and before anything keeps a checkpoint): a warning when the
    store has published checkpoints but no checkpoint is kept for it beside the signing key,
    else None. The store's last one is then taken as kept, so a store rolled back to an older
    backup, or its published checkpoints deleted, before now passes unseen (bb39 F9: the file
    moved away and the store restored, the server started without a word). A key or a file
    that cannot be used is `unextended_checkpoint`'s to refuse."""
    published = Auditor.last_published(store)
    if published is None or not key_file.exists():
        return None
    kept = CheckpointFile(key_file, store.location)
    try:
        if kept.read() is not None:
            return None
    except AuditLogAltered:
        return None
    return (f"the store has published checkpoints (the last of {published['tree_size']} "
            f"events, signed at {published['signed_at']}), but no checkpoint is kept for it "
            f"in {kept.path}: a rollback of the store to an older backup, or published "
            "checkpoints deleted, before now cannot be detected on this host. The store's "
            "last checkpoint is kept from now on; if the file was moved or this host is new, "
            f"copy {kept.path.name} along with the signing key from the host that ran the API "
            "(README, \"Files kept off the database\")")


def changed_after_logging(position: int) -> AuditLogAltered:
    """What a proof, a history or the feed answers for an event whose bytes no longer give
    the leaf the audit log took in for it."""
    return AuditLogAltered(changed_after_logging_message(position))


def check_logged(store: ViewStore, events: Sequence[FeedEvent], *,
                 run: tuple[int, int] | None = None, seals: EventSeals | None = None) -> None:
    """Refuse (AuditLogAltered) to serve events that no longer give the leaf the audit log
    took in for them: changed in the store after they were logged (bb33 F1, F3: a history and
    the feed served them with 200). With `run` (low, high: the events are every stored one
    from low to high, as a page of the feed is), also a leaf in that range whose event is gone
    (bb33 F2); and an event below the log's last position that it never took in (bb38 F7).
    With `seals` (ledger/eventseals.py), every event must carry the ledger's seal, logged or
    not; a store without an audit log checks nothing."""
    if not events:
        return
    with store.reading() as cur:
        if not store.has_table(cur, "audit_leaves"):
            return
        if run is not None:
            rows = cur.execute("SELECT position, leaf_hash FROM audit_leaves WHERE position "
                               "BETWEEN ? AND ?", run)
        else:
            condition, values = cur.one_of("position", [e.position for e in events])
            rows = cur.execute(f"SELECT position, leaf_hash FROM audit_leaves WHERE {condition}",
                               (values,))
        leaves = {int(p): bytes(h) for p, h in rows.fetchall()}
        logged_to = log_end(cur)[1]
        if seals is not None:  # bb38 F2, bb41 F1: an event written by hand, logged or not
            refuse_unsealed(cur, seals, [
                (e.position, leaf_bytes(e.position, e.originator_id, e.version, e.topic,
                                        e.state)) for e in events])
    for event in events:
        leaf = leaves.pop(event.position, None)
        if leaf is not None and leaf != event_leaf_hash(event):
            raise changed_after_logging(event.position)
        if leaf is None and event.position < logged_to:  # bb38 F7
            raise AuditLogAltered(
                f"the event at position {event.position} is not in the audit log, which took "
                "in later ones: it was added to the store by hand, or its leaf deleted; run "
                "vledger verify")
    if leaves:  # a run: leaves left over are events deleted from the store
        gone = sorted(leaves)
        raise AuditLogAltered(
            f"the audit log holds {len(gone)} event(s) no longer in the store (position(s) "
            f"{', '.join(map(str, gone[:3]))}): deleted after they were logged; run vledger "
            "verify")


def log_size(cur: ViewCursor) -> int:
    """How many leaves the audit log holds."""
    row = cur.execute("SELECT MAX(leaf_index) FROM audit_leaves").fetchone()
    return 0 if row is None or row[0] is None else int(row[0]) + 1


def fetch_nodes(cur: ViewCursor, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The hashes of complete blocks (level 0: leaves), in one query per table.

    Blocks below STORED_LEVEL are hashed again from their leaves.
    """
    out: dict[tuple[int, int], bytes] = {}
    small = {(lv, i): range(i << lv, (i + 1) << lv) for lv, i in keys if lv < STORED_LEVEL}
    leaves = sorted({leaf for span in small.values() for leaf in span})
    if leaves:
        condition, values = cur.one_of("leaf_index", leaves)
        for i, h in cur.execute("SELECT leaf_index, leaf_hash FROM audit_leaves "
                                f"WHERE {condition}", (values,)).fetchall():
            out[0, int(i)] = bytes(h)
    for (lv, i), span in small.items():
        if lv > 0 and all((0, leaf) in out for leaf in span):
            out[lv, i] = recompute_root(out[0, leaf] for leaf in span)
    by_level: dict[int, list[int]] = {}
    for lv, i in keys:
        if lv >= STORED_LEVEL:
            by_level.setdefault(lv, []).append(i)
    if by_level:
        where = " OR ".join(f"(level = ? AND idx IN ({','.join('?' * len(ix))}))"
                            for ix in by_level.values())
        params = [p for lv, ix in by_level.items() for p in (lv, *ix)]
        for lv, i, h in cur.execute(f"SELECT level, idx, hash FROM audit_nodes WHERE {where}",
                                    params).fetchall():
            out[int(lv), int(i)] = bytes(h)
    missing = set(keys) - out.keys()
    if missing:
        raise AuditLogAltered(
            f"the audit log lacks the leaves or subtree hashes {sorted(missing)[:3]} "
            "(level, index): they were deleted by hand; `vledger verify` names what no longer "
            "matches, and `vledger projections rebuild audit` logs every event again")
    return out


def _planned(cur: ViewCursor, compute: Callable[[NodeGetter], T]) -> T:
    # Proof shapes depend on sizes only, so a dry run lists every block needed for one query.
    wanted: set[tuple[int, int]] = set()

    def plan(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return _PLACEHOLDER

    compute(plan)
    found = fetch_nodes(cur, wanted)
    return compute(lambda level, index: found[level, index])


def _check_size(value: int, size: int, field: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidField(f"{field} must be a whole number of at least {minimum}", field)
    if value > size:
        raise InvalidField(f"{field} {value} is beyond the log, which holds {size} events", field)
    return value


# The last checkpoint this store published (signed), kept apart from the audit log's own
# tables: a rebuild of the log (`vledger projections rebuild`) drops and refills those, and
# must then find the events still extending what was published.
PUBLISHED_DDL = (
    "CREATE TABLE IF NOT EXISTS audit_published (one INTEGER PRIMARY KEY, "
    "tree_size BIGINT NOT NULL, root_hash TEXT NOT NULL, signed_at TEXT NOT NULL, "
    "signature TEXT NOT NULL, key_id TEXT NOT NULL)")
PUBLISH_SQL = (
    "INSERT INTO audit_published (one, tree_size, root_hash, signed_at, signature, key_id) "
    "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (one) DO UPDATE SET tree_size = "
    "excluded.tree_size, root_hash = excluded.root_hash, signed_at = excluded.signed_at, "
    "signature = excluded.signature, key_id = excluded.key_id "
    "WHERE excluded.tree_size > audit_published.tree_size")


class Auditor:
    """Signed checkpoints and RFC 9162 proofs over the audit log.

    Every checkpoint it signs must extend the last one the store published: the same key, and
    a tree whose first `tree_size` leaves still have the published root. Events changed or
    removed in the database, then folded again by a rebuild of the audit log, would otherwise
    be signed as a second, conflicting history under the same key; here they are refused
    (AuditLogAltered), and `vledger verify` reports them. The last checkpoint signed or
    accepted is also kept in a file beside the key (projections/checkpoint_file.py), so that
    deleting the published row does not let the next checkpoint start a new history.
    """

    def __init__(self, store: ViewStore, key: SigningKey | None,
                 kept: CheckpointFile | None = None) -> None:
        """`key` None: an auditor's reader, which proves and compares but never signs nor
        writes (an outside auditor holds the public key only: `vledger verify`). `kept`: the
        checkpoint file beside the signing key (by default beside `key`'s file, if any)."""
        self.store = store
        self._key = key
        if kept is None and key is not None and key.path is not None:
            kept = CheckpointFile(key.path, store.location)
        self.kept = kept
        self._signed: dict[str, Any] | None = None  # the last checkpoint signed
        self._vouch: tuple[Any, EventSeals] | None = None  # (recorder, seals): `sealing`
        # Auditor.refusal's last answer: (audit position, when, why the route would refuse).
        self._probed: tuple[int, float, str | None] | None = None
        if key is None:
            return
        # Under the views' lock: two API workers starting at once on an empty PostgreSQL
        # schema both ran CREATE TABLE IF NOT EXISTS, and one failed on the catalogue's key.
        with store.transaction(lock=LOCK_NAME) as cur:
            cur.execute(PUBLISHED_DDL)

    @property
    def key(self) -> SigningKey:
        """The signing key (AssertionError for a reader without one: a caller's mistake)."""
        assert self._key is not None, "this auditor reads only: it has no signing key"
        return self._key

    def published(self) -> dict[str, Any] | None:
        """The last checkpoint this store published, if any."""
        if self._key is None:  # a reader does not create the table: none means none published
            return self.last_published(self.store)
        return _read_published(self.store)

    @staticmethod
    def last_published(store: ViewStore) -> dict[str, Any] | None:
        """The last checkpoint a store published, if any, read before any key is loaded (and
        before an Auditor has created the table)."""
        with store.reading() as cur:
            if "audit_published" not in table_names(cur):
                return None
        return _read_published(store)

    def kept_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint kept beside the signing key for this store, if this host keeps one
        (AuditLogAltered when its file cannot be read)."""
        return None if self.kept is None else self.kept.read()

    def check_published(self, size: int | None = None) -> dict[str, Any] | None:
        """Refuse (AuditLogAltered) a tree of `size` leaves (the current one by default) that
        does not extend the last published checkpoint, or the one kept beside the signing key
        (and a store that no longer holds that one); returns the published checkpoint. One
        published since by another host of this key is kept as well."""
        # The file first: a checkpoint is published in the store before it is kept, so one
        # signed between the two reads cannot look like a kept checkpoint the store lacks.
        kept = self.kept_checkpoint()
        published = self.published()
        if published is None and kept is None:
            return None
        if self._key is not None and published is not None \
                and published["key_id"] != self._key.key_id:
            raise AuditLogAltered(
                f"this store's checkpoints are signed with key {published['key_id']}, not with "
                f"key {self.key.key_id} loaded now: set VLEDGER_SIGNING_KEY_FILE to the "
                "store's signing key")
        if kept is not None:
            self._check_kept(kept, published)
        assert published is not None  # none published and one kept: refused above
        if self._key is not None and not verify_checkpoint(self._key.public_key_pem(),
                                                           published):
            raise AuditLogAltered(
                f"the checkpoint the store holds as published (tree_size "
                f"{published['tree_size']}) does not bear this server's signature (key "
                f"{self._key.key_id}): it was replaced in the database")
        size = self.size() if size is None else size
        self._check_extends(published, size, "published")
        if kept is not None and kept["tree_size"] < published["tree_size"]:
            self._check_extends(kept, size, "kept beside the signing key")
        if self._key is not None and self.kept is not None and (
                kept is None or kept["tree_size"] < published["tree_size"]):
            self.kept.keep(published)  # signed by this key, and extended: accepted
        return published

    def refusal(self, position: int) -> str | None:
        """For a probe (/readyz): why the checkpoint route would refuse the log now (what
        `check_published` refuses, a 500 there), or None. It reads the published row, the
        kept file and the O(log n) subtree hashes of the checkpoints' sizes, never the events;
        the answer is remembered while the audit log stays at `position`, for up to
        RECHECK_SECONDS (bb39 F8: with the published row deleted on a running server, the
        route refused after the next write while /readyz said ok until the hourly sweep)."""
        now = time.monotonic()
        held = self._probed
        if held is not None and held[0] == position and now - held[1] < RECHECK_SECONDS:
            return held[2]
        try:
            self.check_published()
            why = None
        except AuditLogAltered as altered:
            why = str(altered)
        self._probed = (position, now, why)
        return why

    def _check_kept(self, kept: dict[str, Any], published: dict[str, Any] | None) -> None:
        """Refuse a checkpoint file of another key, one changed by hand, and a store that no
        longer holds the checkpoint it keeps (bb38 F11)."""
        assert self.kept is not None
        where = f"kept beside the signing key ({self.kept.path})"
        if self._key is not None and kept["key_id"] != self._key.key_id:
            raise AuditLogAltered(
                f"the checkpoint {where} is signed with key {kept['key_id']}, not with key "
                f"{self._key.key_id} loaded from {self.kept.key_file} now: the key file was "
                f"replaced; set VLEDGER_SIGNING_KEY_FILE to the file of key {kept['key_id']}")
        if self._key is not None and not verify_checkpoint(self._key.public_key_pem(), kept):
            raise AuditLogAltered(
                f"the checkpoint {where} does not bear the signature of key {kept['key_id']}: "
                "the file was changed by hand; restore it from a backup")
        the_kept = (f"the checkpoint of {kept['tree_size']} events signed at "
                    f"{kept['signed_at']}, {where}, is not in the store")
        if published is None:
            raise AuditLogAltered(
                f"{the_kept}: published checkpoints were deleted (the store holds none); "
                "restore the store from a backup taken after it was signed")
        if published["tree_size"] < kept["tree_size"]:
            raise AuditLogAltered(
                f"{the_kept}: published checkpoints were deleted (the store's last is of "
                f"{published['tree_size']} events, signed at {published['signed_at']}); "
                "restore the store from a backup taken after it was signed")
        if published["tree_size"] == kept["tree_size"] \
                and published["root_hash"] != kept["root_hash"]:
            raise AuditLogAltered(
                f"{the_kept}: the store's published checkpoint of as many events has another "
                f"root ({published['root_hash'][:16]}… instead of {kept['root_hash'][:16]}…): "
                "it was replaced in the database")

    def _check_extends(self, checkpoint: dict[str, Any], size: int, what: str) -> None:
        """Refuse a tree of `size` leaves whose first `tree_size` do not have the checkpoint's
        root."""
        signed = f"the checkpoint {what} at {checkpoint['signed_at']}"
        if size < checkpoint["tree_size"]:
            raise AuditLogAltered(
                f"the audit log holds {size} events, fewer than the {checkpoint['tree_size']} "
                f"of {signed}: events were removed")
        root = self.root(checkpoint["tree_size"]).hex()
        if root != checkpoint["root_hash"]:
            raise AuditLogAltered(
                f"the first {checkpoint['tree_size']} events no longer have the root of "
                f"{signed} ({root[:16]}… instead of {checkpoint['root_hash'][:16]}…): "
                f"{self._why_root_differs(checkpoint['tree_size'])}")

    def _why_root_differs(self, size: int) -> str:
        """Which of the audit log's tables changed, when its O(log n) rows tell (bb38 F9): a
        root is built from the stored hashes of the tree's complete blocks, so one that is not
        the hash of its two halves was changed itself. Otherwise both causes, and where to
        find which (`vledger verify` reads every event; a request must not)."""
        tops = [(lv, i) for lv, i in Frontier.blocks(size) if lv >= STORED_LEVEL]
        halves = [(lv - 1, 2 * i + side) for lv, i in tops for side in (0, 1)]
        with self.store.reading() as cur:
            found = fetch_nodes(cur, [*tops, *halves])
        for lv, i in tops:
            if found[lv, i] != node_hash(found[lv - 1, 2 * i], found[lv - 1, 2 * i + 1]):
                return (f"the audit log's stored subtree hash at level {lv}, index {i}, which "
                        "that root is built from, is not the hash of its two halves: it was "
                        "changed in the database, and the events may be intact; `vledger "
                        "verify` checks them all, and `vledger projections rebuild audit` "
                        "makes the subtree hashes again from them")
        return ("either events were changed after they were signed (and the audit log rebuilt "
                "from them), or the audit log's leaves or subtree hashes were changed in the "
                "database; `vledger verify` names which: the positions of events that no "
                "longer give their leaves, or the subtree hashes that no longer match (if the "
                "audit log was rebuilt from changed events, compare the events with a backup)")

    def size(self) -> int:
        """The current tree size (events in the audit log)."""
        with self.store.reading() as cur:
            return log_size(cur)

    def root(self, size: int) -> bytes:
        """MTH of the first `size` leaves."""
        with self.store.reading() as cur:
            _check_size(size, log_size(cur), "tree_size")
            return _planned(cur, lambda node: subtree_root(node, 0, size))

    def checkpoint(self, tree_size: int | None = None) -> dict[str, Any]:
        """A signed statement of the root hash at a tree size (the current one by default)."""
        size = self.size() if tree_size is None else tree_size
        root = self.root(size).hex()
        signed = self._signed
        if signed is not None and (signed["tree_size"], signed["root_hash"]) == (size, root):
            # One tree, one statement: signed once, so it (and its ETag) stays the same while
            # the tree does, rather than changing with the second it was asked in.
            return dict(signed)
        # The tree as it stands must extend what was published (a checkpoint of an earlier
        # size, asked for by `tree_size`, is a statement about the same tree).
        published = self.check_published()
        if published is not None and (published["tree_size"], published["root_hash"]) == (
                size, root):  # another process signed this very tree (with this key: checked)
            self._signed = published
            return dict(published)
        self._check_sealed(published["tree_size"] if published is not None else 0, size)
        signed_at = datetime.now(UTC).isoformat(timespec="seconds")
        signature = self.key.sign(checkpoint_message(size, root, signed_at))
        self._signed = {"tree_size": size, "root_hash": root, "signature": signature,
                        "key_id": self.key.key_id, "signed_at": signed_at}
        with self.store.transaction() as cur:
            if cur.postgres:  # published: on disk before anyone is answered with it
                cur.execute("SET LOCAL synchronous_commit = on")
            cur.execute(PUBLISH_SQL, (size, root, signed_at, signature, self.key.key_id))
        if self.kept is not None:  # after the store: a file ahead of it would read as deleted
            self.kept.keep(self._signed)
        return dict(self._signed)

    def keep_signing(self, stop: threading.Event, seconds: float) -> None:
        """Until `stop`: every `seconds`, sign a checkpoint of the log when it grew since the
        last one this process signed or saw published. What is deleted from the store, or
        lost to a restored backup, after the last checkpoint kept beside the key goes
        unnoticed; signing often keeps that window short (bb42 F1, F4). A refusal (an event
        without its seal, an altered log) is logged; /readyz and the sweep report it."""
        while not stop.wait(seconds):
            try:
                signed = self._signed["tree_size"] if self._signed is not None else 0
                if self.size() > signed:
                    self.checkpoint()
            except Exception as error:
                log.error("signing a checkpoint failed: %s: %s", type(error).__name__, error)

    def sealing(self, recorder: Any, seals: EventSeals) -> None:
        """Sign no tree whose new leaves' events lack the ledger's seal (`_check_sealed`)."""
        self._vouch = (recorder, seals)

    def _check_sealed(self, signed: int, size: int) -> None:
        """Refuse (AuditLogAltered) to sign leaves `signed`..`size` - 1 when an event of theirs
        carries no seal of the ledger's key. This server's audit view takes in no such event,
        but any process can write the audit tables: the previous version (which checks no
        seal), or SQL. Signed, the forgery would be vouched for, and `vledger seal` would seal
        it (bb41 F1). Reads the events not signed before, once per new checkpoint."""
        if self._vouch is None or size <= signed:
            return
        recorder, seals = self._vouch
        with self.store.reading() as cur:
            bounds = cur.execute("SELECT MIN(position), MAX(position) FROM audit_leaves WHERE "
                                 "leaf_index BETWEEN ? AND ?", (signed, size - 1)).fetchone()
        if bounds is None or bounds[0] is None:
            return
        low, high = int(bounds[0]), int(bounds[1])
        bad: list[int] = []
        while low <= high:
            events = read_events(recorder, low, 5_000, high)
            if not events:
                break
            with self.store.reading() as cur:
                bad += unsealed_among(cur, seals, [
                    (e.position, leaf_bytes(e.position, e.originator_id, e.version, e.topic,
                                            e.state)) for e in events])
            low = events[-1].position + 1
        if bad:
            raise AuditLogAltered("no checkpoint is signed over the audit log as it stands: "
                                  + unsealed_message(bad))

    def inclusion(self, position: int, tree_size: int,
                  recorder: Any = None) -> dict[str, Any]:
        """The audit path proving the event at `position` is in the tree of `tree_size`; with
        the event store's `recorder`, AuditLogAltered when an event stored there, inside the
        log, has no leaf (deleted by hand while the server ran, bb29 F1)."""
        with self.store.reading() as cur:
            _check_size(tree_size, log_size(cur), "tree_size", minimum=1)
            row = cur.execute("SELECT leaf_index, leaf_hash FROM audit_leaves WHERE position = ?",
                              (position,)).fetchone()
            if row is None:
                # A query parameter, not an id in the path: 422 like a tree_size beyond the log.
                last = cur.execute("SELECT MAX(position) FROM audit_leaves").fetchone()
                if last is not None and last[0] is not None and position < int(last[0]):
                    stored = recorder.select_notifications(position, 1) if recorder else []
                    if stored and stored[0].id == position:
                        raise AuditLogAltered(
                            f"the event at position {position} is stored but has no leaf in "
                            "the audit log, which logged later ones: leaves were deleted by "
                            "hand; `vledger verify` names them, and `vledger projections "
                            "rebuild audit` logs every event again")
                    raise InvalidField(
                        f"no event holds position {position}: positions increase but may skip "
                        "numbers (on PostgreSQL, a write that failed after taking one); the "
                        "feed (/v1/events) lists the positions that hold events", "position")
                raise InvalidField(f"position {position} is beyond the log, which holds "
                                   f"{log_size(cur)} events", "position")
            index = int(row[0])
            if index >= tree_size:
                raise InvalidField(f"position {position} is leaf {index}, outside a tree of "
                                   f"{tree_size}", "position")
            path = _planned(cur, lambda node: inclusion_path(node, index, tree_size))
        return {"position": position, "leaf_index": index, "tree_size": tree_size,
                "leaf_hash": bytes(row[1]).hex(), "hashes": [h.hex() for h in path]}

    def check_leaf(self, recorder: Any, position: int, leaf_hash_hex: str) -> None:
        """Refuse (AuditLogAltered) to prove the inclusion of an event that is no longer what
        the log took in: changed or deleted in the store since. `vledger verify` checks every
        event; a proof asked of one checks that one, for the price of reading it."""
        stored = recorder.select_notifications(position, 1)
        if not stored or stored[0].id != position:
            raise AuditLogAltered(
                f"the event at position {position} is in the audit log but no longer in the "
                "store: it was deleted after it was logged; run vledger verify")
        if event_leaf_hash(decode(stored[0])).hex() != leaf_hash_hex:
            raise changed_after_logging(position)

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        """The proof that the tree of `first` leaves is a prefix of the tree of `second`."""
        with self.store.reading() as cur:
            size = log_size(cur)
            _check_size(second, size, "second", minimum=1)
            _check_size(first, size, "first", minimum=1)
            if first > second:
                raise InvalidField(f"first ({first}) must not exceed second ({second})", "first")
            proof = _planned(cur, lambda node: consistency_proof(node, first, second))
        return {"first": first, "second": second, "hashes": [h.hex() for h in proof]}


def _read_published(store: ViewStore) -> dict[str, Any] | None:
    rows = store.query("SELECT tree_size, root_hash, signed_at, signature, key_id "
                       "FROM audit_published")
    if not rows:
        return None
    size, root, signed_at, signature, key_id = rows[0]
    return {"tree_size": int(size), "root_hash": str(root), "signed_at": str(signed_at),
            "signature": str(signature), "key_id": str(key_id)}
