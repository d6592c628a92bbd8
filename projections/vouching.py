"""The audit log's word on what the ledger's writes may build on (see ledger/vouching.py).

The ledger's core knows nothing of the log; a process with views gives its ledger a
`LeafCheck` (every stored event a load read, compared with its leaf, in one query per load,
on the load's connection)
and the snapshot key derived from the audit signing key (`vouch_for`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from eventsourcing.persistence import StoredEvent

from ledger import Ledger
from ledger.errors import StoreAltered
from ledger.sql import one_of, values_of
from ledger.vouching import SNAPSHOT_KEY_LABEL, Query
from projections.audit import leaf_bytes
from projections.merkle import leaf_hash
from projections.signing import SigningKey
from projections.store import ViewStore

NO_LOG_SECONDS = 5.0  # a store without an audit log is asked again after this long


class LeafCheck:
    """Refuses (StoreAltered) loaded events that are not what the audit log took in."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store
        self._logged = False
        self._no_log_until = 0.0
        # Run by the ledger's loader on its own connection (ledger/vouching.py `Query`): its
        # placeholders, and the views' schema named. The log's greatest position comes in
        # the same statement: an event below it without a leaf had its leaf deleted (the
        # log holds every event, in order).
        postgres = store.postgres
        leaves = f'"{store.location.schema}".audit_leaves' if postgres else "audit_leaves"
        condition = one_of("position", postgres, "%s" if postgres else "?")
        self._statement = (
            f"SELECT MAX(position) AS position, NULL AS leaf_hash FROM {leaves} UNION ALL "
            f"SELECT position, leaf_hash FROM {leaves} WHERE {condition}")

    def _has_log(self) -> bool:
        # Asked of the store until the log is there (never dropped for good: a rebuild makes
        # it again in the same transaction), and then not again: a load costs one query.
        if self._logged:
            return True
        if time.monotonic() < self._no_log_until:
            return False
        with self.store.reading() as cur:
            self._logged = self.store.has_table(cur, "audit_leaves")
        if not self._logged:
            self._no_log_until = time.monotonic() + NO_LOG_SECONDS
        return self._logged

    def __call__(self, events: Sequence[tuple[int, StoredEvent]], query: Query) -> None:
        """Compare each (position, stored event) with its leaf, when the log has one."""
        if not events or not self._has_log():
            return
        values = values_of([position for position, _ in events], self.store.postgres)
        leaves: dict[int, bytes] = {}
        logged_to = 0
        for row in query(self._statement, (values,)):
            position, leaf = row["position"], row["leaf_hash"]
            if leaf is None:
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
                continue  # newer than the log: nothing to compare it with yet
            if leaf != leaf_hash(leaf_bytes(position, str(stored.originator_id),
                                            stored.originator_version, stored.topic,
                                            stored.state)):
                raise StoreAltered(str(stored.originator_id), position)


def vouch_for(ledger: Ledger, store: ViewStore, key: SigningKey) -> None:
    """Make `ledger` build its writes only on events its audit log vouches for, and on
    snapshots sealed with a key derived from the audit signing key."""
    ledger.vouch(LeafCheck(store), key.derived_key(SNAPSHOT_KEY_LABEL))


__all__ = ["LeafCheck", "vouch_for"]
