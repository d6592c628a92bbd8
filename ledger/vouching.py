"""What a write may build on: stored events the audit log vouches for, and sealed snapshots.

Whoever runs the database can edit a stored event or snapshot; a write that loaded the edited
state would check the request against it and record new facts on it (bb33 F1, F2). So loading
(ledger/loading.py) takes two things from outside the ledger's core:

- `EventCheck`: called once per load with every stored event read (and its position); it
  refuses (`StoreAltered`) an event the audit log took in whose bytes no longer give its
  leaf. The views (projections/vouching.py) answer it with one query of the log's leaves,
  run in the load's own transaction.
  An event newer than the log (the audit view has not read it yet) has no leaf and cannot be
  checked: it passes, as it would in `vledger verify`'s view of a lagging log.
- `SnapshotSeal`: a snapshot is derived state, never logged, so it carries a MAC instead
  (HMAC-SHA256 under a key derived with HKDF from the audit signing key, which lives outside
  the database). A snapshot whose MAC does not match, or that has none (stored before seals,
  or by a process without the key), is not used: its aggregate is replayed from its events,
  which the check above then covers. Refusing the write instead would protect nothing (the
  operator could delete the MAC, and an unsealed snapshot must still load) and would stop
  writes after a key change; replaying costs time only.

A sealed snapshot's stored state is the library's JSON with one more member at its end,
`"mac":"<64 hex digits>"`, over everything else: the library still reads it (the extra member
is an attribute of the snapshot event, not of the aggregate it restores).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent

# Runs one statement on the connection, and in the transaction, the events were read in
# (placeholders as that store takes them: `%s` on PostgreSQL, `?` on SQLite); its rows, read
# by column name.
Query = Callable[[str, Sequence[Any]], list[Any]]
# Called with (position, stored event) of every event a load read, the version the store holds
# of every id the load asked for (0 for none), and a Query; raises StoreAltered.
EventCheck = Callable[[Sequence[tuple[int, StoredEvent]], Mapping[str, int], Query], None]

# The HKDF `info` of the snapshot key: a key for this purpose only, whatever else the signing
# key derives (the API's cursor secret).
SNAPSHOT_KEY_LABEL = b"vledger snapshot mac v1"
_MARK = b',"mac":"'
_TRAILER = len(_MARK) + 64 + 2  # the mark, the hex MAC, '"}'


class SnapshotSeal:
    """Seals stored snapshots with a MAC and tells a sealed one from a forged or unsealed one."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a snapshot key has at least 32 bytes")
        self._key = key

    def _mac(self, stored: StoredEvent, body: memoryview) -> str:
        oid, topic = str(stored.originator_id).encode(), stored.topic.encode()
        mac = hmac.new(self._key, b"vledger-snapshot\x00", hashlib.sha256)
        mac.update(struct.pack(">I", len(oid)) + oid)
        mac.update(struct.pack(">QI", stored.originator_version, len(topic)) + topic)
        mac.update(body)  # the JSON up to its closing brace, which the MAC covers too
        mac.update(b"}")
        return mac.hexdigest()

    def seal(self, stored: StoredEvent) -> StoredEvent:
        """The snapshot with its MAC appended as the last member of its JSON object."""
        state = bytes(stored.state)
        if not state.endswith(b"}") or state == b"{}":
            raise ValueError("a snapshot's state is a JSON object with members")
        mac = self._mac(stored, memoryview(state)[:-1])
        return StoredEvent(originator_id=stored.originator_id,
                           originator_version=stored.originator_version, topic=stored.topic,
                           state=state[:-1] + _MARK + mac.encode() + b'"}')

    def vouches(self, stored: StoredEvent) -> bool | None:
        """True when the snapshot's MAC matches; False when it has one that does not (forged,
        or sealed under another key); None when it has none (unsealed)."""
        state = stored.state
        if len(state) <= _TRAILER or state[-_TRAILER:-_TRAILER + len(_MARK)] != _MARK \
                or not state.endswith(b'"}'):
            return None
        found = state[-_TRAILER + len(_MARK):-2]
        expected = self._mac(stored, memoryview(state)[:-_TRAILER])
        return hmac.compare_digest(found, expected.encode())


__all__ = ["SNAPSHOT_KEY_LABEL", "EventCheck", "Query", "SnapshotSeal"]
