"""The audit log's word on what the ledger's writes may build on (see ledger/vouching.py).

The ledger's core knows nothing of the log; a process with views gives its ledger a
`LeafCheck` (every stored event a load read, compared with its leaf, in one query per load,
on the load's connection)
and the snapshot key derived from the audit signing key (`vouch_for`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from eventsourcing.persistence import StoredEvent

from ledger import Ledger
from ledger.errors import StoreAltered
from ledger.eventseals import SEALS_TABLE, EventSeals, leaf_bytes, unsealed_message
from ledger.sql import one_of, values_of
from ledger.vouching import SNAPSHOT_KEY_LABEL, Query
from projections.merkle import leaf_hash
from projections.signing import SigningKey
from projections.store import ViewStore

NO_LOG_SECONDS = 5.0  # a store without an audit log is asked again after this long


class LeafCheck:
    """Refuses (StoreAltered) loaded events that are not what the audit log took in."""

    def __init__(self, store: ViewStore, seals: EventSeals | None = None) -> None:
        self.store = store
        self.seals = seals
        self._logged = False
        self._no_log_until = 0.0
        # Run by the ledger's loader on its own connection (ledger/vouching.py `Query`): its
        # placeholders, and the views' schema named. The log's greatest position comes in
        # the same statement: an event below it without a leaf had its leaf deleted (the
        # log holds every event, in order).
        # The last version the log took in of each record asked for comes in it too, as
        # (version, NULL, id) rows (LoggedVersions).
        postgres = store.postgres
        mark = "%s" if postgres else "?"

        def table(name: str) -> str:
            return f'"{store.location.schema}".{name}' if postgres else name

        leaves, versions = table("audit_leaves"), table("logged_versions")
        self._statement = (
            f"SELECT MAX(position) AS position, NULL AS leaf_hash, NULL AS originator_id "
            f"FROM {leaves} UNION ALL SELECT position, leaf_hash, NULL FROM {leaves} "
            f"WHERE {one_of('position', postgres, mark)} UNION ALL SELECT version, NULL, "
            f"originator_id FROM {versions} WHERE {one_of('originator_id', postgres, mark)}")
        # The seals of events the log has not taken in yet (ledger/eventseals.py), in a second
        # statement run only for such events.
        self._seals_statement = (f"SELECT position, mac FROM {table(SEALS_TABLE)} WHERE "
                                 f"{one_of('position', postgres, mark)}")

    def _has_log(self) -> bool:
        # Asked of the store until the log is there (never dropped for good: a rebuild makes
        # it again in the same transaction), and then not again: a load costs one query.
        if self._logged:
            return True
        if time.monotonic() < self._no_log_until:
            return False
        with self.store.reading() as cur:
            self._logged = (self.store.has_table(cur, "audit_leaves")
                            and self.store.has_table(cur, "logged_versions"))
        if not self._logged:
            self._no_log_until = time.monotonic() + NO_LOG_SECONDS
        return self._logged

    def __call__(self, events: Sequence[tuple[int, StoredEvent]], held: Mapping[str, int],
                 query: Query) -> None:
        """Compare each (position, stored event) with its leaf, when the log has one, and
        each record's version in the store (`held`) with the last the log took in."""
        if not (events or held) or not self._has_log():
            return
        postgres = self.store.postgres
        positions = values_of([position for position, _ in events], postgres)
        ids = values_of(sorted(held), postgres)
        leaves: dict[int, bytes] = {}
        logged_to = 0
        for row in query(self._statement, (positions, ids)):
            position, leaf, oid = row["position"], row["leaf_hash"], row["originator_id"]
            if oid is not None:
                if int(position) > held.get(str(oid), 0):
                    raise StoreAltered(str(oid), 0, (
                        f"the audit log took in version {int(position)} of it, but the store "
                        f"holds {held.get(str(oid)) or 'none'}: its last events were deleted "
                        "by hand after they were logged; run vledger verify, and restore "
                        "them from a backup"))
            elif leaf is None:
                logged_to = int(position or 0)
            else:
                leaves[int(position)] = bytes(leaf)
        for position, stored in events:
            leaf = leaves.get(position)
            if leaf is None:
                if position < logged_to:
                    raise StoreAltered(str(stored.originator_id), position, (
                        f"the event at position {position} has no leaf in the audit log, "
                        "which logged later ones: its leaf was deleted by hand; run vledger "
                        "verify"))
                continue  # newer than the log: its seal tells
            if leaf != leaf_hash(leaf_bytes(position, str(stored.originator_id),
                                            stored.originator_version, stored.topic,
                                            stored.state)):
                raise StoreAltered(str(stored.originator_id), position)
        if events and self.seals is not None:
            # Every event, also those the log took in: its leaves past the last signed
            # checkpoint may have been written by a process that checks no seal (bb41 F1).
            self._check_sealed(events, query)

    def _check_sealed(self, events: Sequence[tuple[int, StoredEvent]], query: Query) -> None:
        """Refuse (StoreAltered) loaded events that carry no seal of the ledger's key: written
        by hand, and not to be built on (bb38 F2)."""
        seals = self.seals
        assert seals is not None
        todo = events
        rows = query(self._seals_statement, (values_of([p for p, _ in todo],
                                                       self.store.postgres),))
        bad = seals.unsealed(
            [(p, leaf_bytes(p, str(e.originator_id), e.originator_version, e.topic, e.state))
             for p, e in todo], {int(r["position"]): bytes(r["mac"]) for r in rows})
        if bad:
            oid = next(str(e.originator_id) for p, e in todo if p == bad[0])
            raise StoreAltered(oid, bad[0], unsealed_message(bad))


def vouch_for(ledger: Ledger, store: ViewStore, key: SigningKey) -> None:
    """Make `ledger` build its writes only on events its audit log vouches for, and on
    snapshots sealed with a key derived from the audit signing key."""
    # The snapshot key is this store's (bb41 F3: a snapshot copied from another store of the
    # same key was built on): derived with its id, made here if the store has none yet.
    store_id = ledger.recorder.store_id(True)  # type: ignore[attr-defined]
    ledger.vouch(LeafCheck(store, ledger.seals),
                 key.derived_key(SNAPSHOT_KEY_LABEL + b"\x00" + str(store_id).encode("ascii")))


__all__ = ["LeafCheck", "vouch_for"]
