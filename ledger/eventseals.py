"""Every event the ledger writes carries a seal that only a holder of the signing key can make.

Whoever runs the database could append a well-formed event by hand (a session, a revocation
undone, an award): the audit log took it in like any other, signed it into its next
checkpoint, and the views counted it (bb38 F2). The log proves that nothing changed after it
took an event in; it cannot tell who wrote the event. Now the writer says so.

- **The seal** of an event is HMAC-SHA256, cut to 16 bytes, under a key derived (HKDF, label
  `vledger event seal v1`) from the store's signing key (ledger/signingkey.py: a file on the
  server, off the database host), over the event's leaf input: its position, id, version,
  topic and stored bytes, exactly as projections/audit.py defines them. It is stored in
  `event_seals (position, mac)` in the write's own transaction, by both recorders, for every
  writer: the API, `vledger demo`, `vledger tokens`, imports.
- **Where seals begin.** A store written before seals holds unsealed events. The first sealed
  write records its position in `event_seal_start` (one row: position, the key's id, and a
  MAC of both); every event at or after it must be sealed. The start is also kept off the
  database, in a file beside the KEK file (`anchor_path`, ledger/keks.py), written
  once by the first process that reads the start: a start row deleted by hand (to pass forged
  events off as old, unsealed ones) is found on any host holding that file, as is one deleted
  while sealed events remain.
- **Who checks.** The audit log refuses to take in an event at or after the start without a
  matching seal: the whole page is refused, so no view counts it, and /readyz says why
  (projections/audit.py). A write refuses to build on such an event the log has not reached
  (projections/vouching.py), and the event feed refuses to serve one.

A process that must check or make seals of a sealed store without the key file refuses
(ConfigurationError naming the file); a key is created on first use only for a store that has
no sealed event yet. `vledger verify`, run by an outside auditor with the public key only,
cannot check seals (they are MACs): the server's audit sweep does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import StoredEvent

from ledger.errors import StoreAltered
from ledger.files import create_once
from ledger.settings import ConfigurationError, StoreLocation
from ledger.signingkey import create_key_file, derive_key, load_private_key

SEALS_TABLE = "event_seals"
START_TABLE = "event_seal_start"
LABEL = b"vledger event seal v1"
MAC_BYTES = 16
ANCHOR_SUFFIX = ".seal-start"
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
    """The seals and the start of sealing (an INTEGER PRIMARY KEY is SQLite's rowid: one
    B-tree)."""
    if postgres:
        seals, start = f'"{schema}".{SEALS_TABLE}', f'"{schema}".{START_TABLE}'
        return [f"CREATE TABLE IF NOT EXISTS {seals} (position bigint PRIMARY KEY, "
                "mac bytea NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {start} (one integer PRIMARY KEY CHECK (one = 1), "
                "position bigint NOT NULL, key_id text NOT NULL, mac bytea NOT NULL)"]
    return [f"CREATE TABLE IF NOT EXISTS {SEALS_TABLE} (position INTEGER PRIMARY KEY, "
            "mac BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {START_TABLE} (one INTEGER PRIMARY KEY CHECK "
            "(one = 1), position INTEGER NOT NULL, key_id TEXT NOT NULL, mac BLOB NOT NULL)"]


def start_query(seals: str, start: str) -> str:
    """One row: the start's position, key id and MAC (NULL without a start), and the least
    sealed position (NULL without a seal)."""
    return (f"SELECT (SELECT position FROM {start} WHERE one = 1) AS start_position, "
            f"(SELECT key_id FROM {start} WHERE one = 1) AS key_id, "
            f"(SELECT mac FROM {start} WHERE one = 1) AS mac, "
            f"(SELECT MIN(position) FROM {seals}) AS least")


def _values(row: Any) -> tuple[Any, Any, Any, Any]:
    if isinstance(row, dict):
        return row["start_position"], row["key_id"], row["mac"], row["least"]
    return row[0], row[1], row[2], row[3]


class EventSeals:
    """A store's seal key, and where its sealed events begin (once read, kept: a start row
    changed later by hand does not move it in this process)."""

    def __init__(self, key_file: Path, anchor_file: Path) -> None:
        self.key_file = key_file
        self.anchor_file = anchor_file
        self._key: bytes | None = None
        self._private: Ed25519PrivateKey | None = None
        self._start: int | None = None
        self._pads: tuple[bytes, Any, Any] | None = None  # (key, inner, outer): `_macs`
        self._lock = threading.Lock()

    # -- the key --------------------------------------------------------------------------

    def _load(self, create: bool) -> bytes | None:
        with self._lock:
            if self._key is None:
                if not self.key_file.exists():
                    if not create:
                        return None
                    create_key_file(self.key_file)
                self._private = load_private_key(self.key_file)
                self._key = derive_key(self._private, LABEL)
            return self._key

    def derived(self, label: bytes) -> bytes | None:
        """A key for another purpose (`label`) derived from the signing key, once this process
        has loaded it to seal or check events (None before)."""
        private = self._private
        return None if private is None else derive_key(private, label)

    def _needed(self) -> bytes:
        key = self._load(create=False)
        if key is None:
            raise ConfigurationError(
                f"this store's events are sealed, and there is no signing key at "
                f"{self.key_file} to check or make their seals: set VLEDGER_SIGNING_KEY_FILE "
                "to the store's signing key")
        return key

    @staticmethod
    def key_id_of(key: bytes) -> str:
        """An id of a seal key that tells nothing of it."""
        return hmac.new(key, b"key id", hashlib.sha256).hexdigest()[:16]

    @staticmethod
    def _mac(key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()[:MAC_BYTES]

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

    def _start_mac(self, key: bytes, position: int) -> bytes:
        return self._mac(key, b"seal start\x00" + str(position).encode())

    # -- where seals begin ----------------------------------------------------------------

    @property
    def known_start(self) -> int | None:
        """The first sealed position, once this process has read it."""
        return self._start

    def _anchored(self) -> int | None:
        try:
            return int(json.loads(self.anchor_file.read_text())["position"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigurationError(f"{self.anchor_file} is not a seal start file: "
                                     f"{error}") from error

    def start(self, row: Any, *, writing: bool = False) -> int | None:
        """The first sealed position, from a row of `start_query` read in the caller's
        transaction; None for a store with no sealed event yet (a writer then seals from its
        own first position on, `start_row`). StoreAltered when the start was deleted or
        changed by hand; ConfigurationError for a key that is not the store's, or none."""
        if self._start is not None:
            return self._start
        position, key_id, mac, least = _values(row)
        anchored = self._anchored()
        if position is None:
            if anchored is not None:
                raise StoreAltered("the event store", anchored, (
                    f"its sealed events begin at position {anchored} (kept in "
                    f"{self.anchor_file}), but the store no longer says so: the start of "
                    "sealed events was deleted by hand, which would pass events appended by "
                    "hand off as older, unsealed ones. Restore the store from a backup (if "
                    "it was restored on purpose from a backup taken before sealing began, "
                    f"delete {self.anchor_file})"))
            if least is not None:
                raise StoreAltered("the event store", int(least), (
                    f"it holds sealed events from position {int(least)} on, but not where "
                    "they begin: the start of sealed events was deleted by hand. Restore the "
                    "store from a backup"))
            if writing:
                self._load(create=True)
            return None
        position = int(position)
        key = self._needed()
        if key_id != self.key_id_of(key):
            raise ConfigurationError(
                f"this store's events are sealed with key {key_id}, not with the key in "
                f"{self.key_file} ({self.key_id_of(key)}): set VLEDGER_SIGNING_KEY_FILE to the "
                "store's signing key")
        if not hmac.compare_digest(bytes(mac), self._start_mac(key, position)):
            raise StoreAltered("the event store", position, (
                "the start of its sealed events was changed by hand (its MAC does not match); "
                "restore the store from a backup"))
        if anchored is None:
            create_once(self.anchor_file, json.dumps({"position": position,
                                                      "key_id": key_id}).encode(),
                        ".seal-start-")
            anchored = self._anchored()
        if anchored != position:
            raise StoreAltered("the event store", position, (
                f"its sealed events begin at position {anchored} (kept in {self.anchor_file}),"
                f" but the store says {position}: the start of sealed events was changed by "
                "hand. Restore the store from a backup"))
        self._start = position
        return position

    def start_row(self, position: int) -> tuple[int, str, bytes]:
        """The row that says sealed events begin at `position` (a writer's first)."""
        key = self._needed()
        return position, self.key_id_of(key), self._start_mac(key, position)

    # -- seals ------------------------------------------------------------------------------

    def seals(self, positions: Iterable[int],
              stored_events: Sequence[StoredEvent]) -> list[tuple[int, bytes]]:
        """(position, MAC) of each event a write stored."""
        mac = self._macs(self._needed())
        return [(position, mac(leaf_bytes(position, str(e.originator_id),
                                          e.originator_version, e.topic, e.state)))
                for position, e in zip(positions, stored_events, strict=True)]

    def unsealed(self, events: Iterable[tuple[int, bytes]],
                 macs: Mapping[int, bytes]) -> list[int]:
        """The positions among `events` (position, leaf input: `leaf_bytes`) whose seal in
        `macs` is missing or does not match: written by someone without the key. (Events
        before the start are the caller's to leave out.)"""
        mac, compare = self._macs(self._needed()), hmac.compare_digest
        return [position for position, data in events
                if (found := macs.get(position)) is None
                or not compare(found, mac(data))]


def unsealed_message(positions: Sequence[int]) -> str:
    """What every check says of events without their seal."""
    shown = ", ".join(map(str, positions[:5])) + (" …" if len(positions) > 5 else "")
    return (f"{len(positions)} event(s) (position(s) {shown}) carry no seal of this ledger's "
            "key: they were written into the store, or changed there, by hand. Nothing is "
            "built on them and no view counts them; delete them (or restore the store from a "
            "backup) after finding out who wrote them")


def anchor_path(kek_file: Path, location: StoreLocation) -> Path:
    """Where the start of sealed events is kept off the database: beside the KEK file, named
    for the store (one KEK file may serve several): `<KEK file>.<db>.<schema>.seal-start`
    on PostgreSQL, `<KEK file>.<SQLite file name>-<hash of its path>.seal-start`."""
    if location.kind == "sqlite" and location.sqlite_path is not None:
        where = str(location.sqlite_path.resolve())
        tag = f"{location.sqlite_path.name}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"
    else:
        tag = f"{location.dbname}.{location.schema}"
    return kek_file.with_name(f"{kek_file.name}.{tag}{ANCHOR_SUFFIX}")


__all__ = ["EventSeals", "anchor_path", "create_statements", "leaf_bytes", "start_query",
           "unsealed_message"]
