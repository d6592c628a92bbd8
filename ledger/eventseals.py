"""Every event the ledger writes carries a seal that only a holder of the signing key can make.

Whoever runs the database could append a well-formed event by hand (a session, a revocation
undone, an award): the audit log took it in like any other, signed it into its next
checkpoint, and the views counted it (bb38 F2). The log proves that nothing changed after it
took an event in; it cannot tell who wrote the event. Now the writer says so.

- **The seal** of an event is HMAC-SHA256, cut to 16 bytes, under a key derived (HKDF, label
  `vledger event seal v1`, NUL, the store's random id from `vledger_store`: a key for this
  store only) from the store's signing key (ledger/signingkey.py: a file on the
  server, off the database host), over the event's leaf input: its position, id, version,
  topic and stored bytes, exactly as projections/audit.py defines them. It is stored in
  `event_seals (position, mac)` in the write's own transaction, by both recorders, for every
  writer: the API, `vledger demo`, `vledger tokens`, imports.
- **Every event needs one.** The audit log takes in no event without a matching seal: the
  whole page is refused, so no view counts it, and /readyz says why (projections/audit.py).
  A write refuses to build on such an event the log has not reached
  (projections/vouching.py), the event feed refuses to serve one, and `vledger serve` does
  not start on a store holding one. An event the log took in is vouched for by its leaf as
  well. There is no "start of sealing" to delete or move (bb39 F1, F2: deleting every seal,
  the start and its file passed forged events off as events of before seals): deleting seals
  makes events unsealed, which refuses them.
- **A store written before seals** holds unsealed events: `vledger seal` (projections/cli.py),
  run once by the operator with the key, seals the events the audit log took in whose leaves
  they still give, after checking the log against its checkpoints; an event the log has not
  taken in is never sealed by it (bb39 F1).

A writer without the key file makes one only for an empty store, and refuses
(ConfigurationError naming the file) to write to a store that holds events, as does one whose
key did not seal the store's last sealed event. `vledger verify`, run by an outside auditor
with the public key only, cannot check seals (they are MACs): the server's audit sweep does,
and `vledger verify` run where the key is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import StoredEvent

from ledger.errors import StoreAltered
from ledger.settings import ConfigurationError
from ledger.signingkey import create_key_file, derive_key, load_private_key

SEALS_TABLE = "event_seals"
STORE_TABLE = "vledger_store"
LABEL = b"vledger event seal v1"
MAC_BYTES = 16
# Put before the leaf input by `vledger seal` (a store written before seals), not by writes.
LATE = b"vledger sealed late\x00"
# HMAC's key pads (RFC 2104) for SHA-256's 64-byte block.
_BLOCK = 64
_INNER = bytes(b ^ 0x36 for b in range(256))
_OUTER = bytes(b ^ 0x5C for b in range(256))


def leaf_bytes(position: int, originator_id: str, version: int, topic: str,
               state: bytes) -> bytes:
    """The canonical leaf input of one event (projections/audit.py's module docstring): what
    the audit log hashes and what a seal covers."""
    oid, top = originator_id.encode("utf-8"), topic.encode("utf-8")
    pack = struct.pack  # adjacent fixed-width fields packed together: three calls, not five
    return b"".join((b"\x01", pack(">QI", position, len(oid)), oid,
                     pack(">QI", version, len(top)), top, pack(">I", len(state)), state))


def create_statements(postgres: bool, schema: str = "") -> list[str]:
    """The seals (an INTEGER PRIMARY KEY is SQLite's rowid: one B-tree), and the table of the
    store's own random id (made by the first process that needs it: `store_id_made`)."""
    if postgres:
        return [f'CREATE TABLE IF NOT EXISTS "{schema}".{SEALS_TABLE} (position bigint '
                "PRIMARY KEY, mac bytea NOT NULL)",
                f'CREATE TABLE IF NOT EXISTS "{schema}".{STORE_TABLE} (one integer PRIMARY KEY '
                "CHECK (one = 1), store_id text NOT NULL)"]
    return [f"CREATE TABLE IF NOT EXISTS {SEALS_TABLE} (position INTEGER PRIMARY KEY, "
            "mac BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {STORE_TABLE} (one INTEGER PRIMARY KEY CHECK "
            "(one = 1), store_id TEXT NOT NULL)"]


def new_store_id(has_seals: bool) -> str:
    """A store's random id, made when it has none: refused (StoreAltered) for a store that
    holds seals, whose id was deleted by hand (a new one would refuse every seal)."""
    if has_seals:
        raise StoreAltered("the event store", 0, (
            f"its id ({STORE_TABLE}) was deleted by hand, so the seals of its events cannot "
            "be checked; restore the store from a backup"))
    return secrets.token_hex(16)


class EventSeals:
    """A store's seal key: loaded once, made for an empty store only."""

    def __init__(self, key_file: Path, store_id: Callable[[bool], str | None],
                 claim: Callable[[str], None] | None = None) -> None:
        self.key_file = key_file
        # Records the store's id beside the key before a writer seals (ledger/storeids.py).
        self._claim = claim
        # The store's own random id (`vledger_store`), read once: the seal key is derived for
        # this store only, so events and seals copied from another store of the same key
        # (PostgreSQL's default key serves every schema) are refused (bb40 F2). Called with
        # whether to make it when there is none (None then).
        self._store_id = store_id
        self._key: bytes | None = None
        self._private: Ed25519PrivateKey | None = None
        self._id: str | None = None
        self._pads: tuple[bytes, Any, Any] | None = None  # (key, inner, outer): `_macs`
        self._lock = threading.Lock()

    def _load(self, create: bool, writing: bool = False) -> bytes | None:
        """The store's seal key (None without a key file; one is made with `create`). A
        writer (`writing`, before its write's transaction) has the store's id made if it has
        none; a reader, often inside a transaction of the views, does not: a store without an
        id has no seal, and its key is not kept, so the id a writer makes later is used."""
        with self._lock:
            if self._key is not None:
                return self._key
            if self._private is None:
                if not self.key_file.exists():
                    if not create:
                        return None
                    create_key_file(self.key_file)
                self._private = load_private_key(self.key_file)
            store_id = self._store_id(writing)
            if writing and store_id is not None and self._claim is not None:
                self._claim(store_id)  # bb41 F2: no second store of this key with its id
            key = derive_key(self._private, LABEL + b"\x00" + (store_id or "").encode("ascii"))
            if store_id is not None:
                self._key, self._id = key, store_id
            return key

    @property
    def ready(self) -> bool:
        """Whether the key is loaded (a writer checks it against the store before)."""
        return self._key is not None

    def for_writing(self, empty: bool, last: tuple[int, str, int, str, bytes, bytes] | None
                    ) -> None:
        """Load the key before a process's first write (ConfigurationError when it cannot
        seal this store): `empty`, whether the store holds no event (the key is then made if
        missing); `last`, the store's last sealed event and its seal (position, id, version,
        topic, state, mac), which the key must have made."""
        key = self._load(create=empty, writing=True)
        if key is None:
            raise ConfigurationError(
                f"this store holds events, and there is no signing key at {self.key_file} to "
                "seal the events written to it: set VLEDGER_SIGNING_KEY_FILE to the store's "
                "signing key (a key is made only for an empty store)")
        if last is not None:
            position, oid, version, topic, state, mac = last
            # A stored value of another type (TEXT, by hand) is compared as its bytes: it
            # matches no seal (bb40 F4: a 500, and the next write went unchecked).
            data = state.encode() if isinstance(state, str) else bytes(state)
            found = mac.encode() if isinstance(mac, str) else bytes(mac)
            if not hmac.compare_digest(found, self._macs(key)(
                    leaf_bytes(int(position), str(oid), int(version), str(topic), data))):
                with self._lock:
                    self._key = None
                raise ConfigurationError(
                    f"the store's last sealed event (position {position}) was not sealed with "
                    f"the key in {self.key_file}: set VLEDGER_SIGNING_KEY_FILE to the store's "
                    "signing key (or, if it is the store's key, that seal or event was changed "
                    "by hand: run vledger verify)")

    def derived(self, label: bytes) -> bytes | None:
        """A key for another purpose (`label`), for this store only, derived from the signing
        key once this process has loaded it to seal or check events (None before)."""
        private, store_id = self._private, self._id
        if private is None or store_id is None:
            return None
        return derive_key(private, label + b"\x00" + store_id.encode("ascii"))

    def _needed(self, writing: bool = False) -> bytes:
        key = self._load(create=False, writing=writing)
        if key is None:
            raise ConfigurationError(
                f"there is no signing key at {self.key_file} to check or make the seals of this "
                "store's events: set VLEDGER_SIGNING_KEY_FILE to the store's signing key")
        return key

    def _macs(self, key: bytes) -> Callable[[bytes], bytes]:
        """`_mac` under `key`, as a function of the data: the key's two padded blocks are
        hashed once and copied for each event (RFC 2104), where `hmac.new` hashed them again
        every time (two of the five SHA-256 blocks of a session's seal)."""
        pads = self._pads
        if pads is None or pads[0] != key:
            block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK,
                                                                                      b"\0")
            pads = (key, hashlib.sha256(block.translate(_INNER)),
                    hashlib.sha256(block.translate(_OUTER)))
            self._pads = pads
        _, inner, outer = pads

        def mac(data: bytes) -> bytes:
            digest = inner.copy()
            digest.update(data)
            result = outer.copy()
            result.update(digest.digest())
            return result.digest()[:MAC_BYTES]

        return mac

    def seals(self, positions: Iterable[int],
              stored_events: Sequence[StoredEvent]) -> list[tuple[int, bytes]]:
        """(position, MAC) of each event a write stored."""
        mac = self._macs(self._needed())
        return [(position, mac(leaf_bytes(position, str(e.originator_id),
                                          e.originator_version, e.topic, e.state)))
                for position, e in zip(positions, stored_events, strict=True)]

    def seal(self, events: Iterable[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """(position, MAC) of events of a store written before seals, given as (position,
        leaf input): `vledger seal`'s, in a domain of their own (`LATE`), so that a seal made
        by a write of this version can be told from one made afterwards (bb42 F2)."""
        mac = self._macs(self._needed(writing=True))  # a writer: the store's id is made
        return [(position, mac(LATE + data)) for position, data in events]

    def unsealed(self, events: Iterable[tuple[int, bytes]],
                 macs: Mapping[int, bytes]) -> list[int]:
        """The positions among `events` (position, leaf input: `leaf_bytes`) whose seal in
        `macs` is missing or does not match: written by someone without the key."""
        return self.classify(events, macs)[0]

    def classify(self, events: Iterable[tuple[int, bytes]],
                 macs: Mapping[int, bytes]) -> tuple[list[int], list[int]]:
        """(the positions without a matching seal, those sealed by a write of this version);
        the rest carry a seal `vledger seal` made."""
        mac, compare = self._macs(self._needed()), hmac.compare_digest
        bad: list[int] = []
        written: list[int] = []
        for position, data in events:
            found = macs.get(position)
            if found is None:
                bad.append(position)
            elif compare(found, mac(data)):
                written.append(position)
            elif not compare(found, mac(LATE + data)):
                bad.append(position)
        return bad, written


def unsealed_message(positions: Sequence[int]) -> str:
    """What every check says of events without their seal."""
    shown = ", ".join(map(str, positions[:5])) + (" …" if len(positions) > 5 else "")
    return (f"{len(positions)} event(s) (position(s) {shown}) carry no seal of this ledger's "
            "key: written into the store, or changed there, by hand (or stored by a version "
            "before seals: then `vledger seal`, once, seals those the audit log took in). "
            "Nothing is built on them and no view counts them; delete them, or restore the "
            "store from a backup, after finding out who wrote them")


__all__ = ["EventSeals", "create_statements", "leaf_bytes", "unsealed_message"]
