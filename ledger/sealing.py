"""Phone and id numbers are stored sealed, each under a key of its own, so that they can be
erased from a ledger whose events never change (crypto-shredding).

A volunteer may withdraw their phone or id number (`"phone": null`), and China's PIPL (art. 47)
then asks for its deletion; a corrected number leaves the old one with no purpose either. The
events cannot forget: they are the record, and the audit log's Merkle leaves are their stored
bytes. So the events hold each number sealed (AES-256-GCM) under a random key kept in a table
beside them, `personal_keys`, the one table of the store whose rows are deleted. The write that
withdraws or replaces a number deletes its key in the same transaction, and from then on the
number reads as ERASED everywhere: the volunteer's history, the event feed, a backup of the
events. The stored bytes stay as they were, so every leaf, proof and checkpoint still verifies.

The keys are stored wrapped under a key-encryption key kept outside the database, which a
rotation replaces (ledger/keks.py): a backup of the keys taken before an erasure opens nothing
once the KEK of its time is gone. The recorder wraps a write's keys as it stores them, and
`select_keys` answers them unwrapped.

A sealed value is `{"sealed": key id, "box": base64 of nonce and ciphertext}`; the key id is
also the cipher's associated data, so a box cannot be moved under another key. Events stored
before sealing hold plain numbers: they read as they are and cannot be erased.

What a write stores and deletes of the keys (`KeyChanges`) rides with it to the recorder as the
write guard does (ledger/guards.py): the recorder applies it inside the inserting transaction,
so a key is stored if and only if the event sealed with it is, and a withdrawal and the deletion
of the key commit together. A write retried after a lost race seals again, with new keys.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.guards import holding

SEALED_FIELDS = ("phone", "id_number")
# What an erased number reads as, to every caller.
ERASED = "[erased]"
KEYS_TABLE = "personal_keys"
_NONCE_BYTES = 12
# Where personal data sits in an event's data: a registration's `personal`, an update's
# `changes`.
HOLDERS = ("personal", "changes")


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"sealed", "box"}


def holders(data: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Where personal data may sit in an event's data (or personal data): the data itself,
    and its `personal` (a registration) and `changes` (an update)."""
    yield data
    for holder in HOLDERS:
        if isinstance(data.get(holder), dict):
            yield data[holder]


@dataclass
class KeyChanges:
    """The keys one write stores (`added`) and deletes (`erased`)."""

    added: dict[str, bytes] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)

    def seal(self, value: str) -> dict[str, str]:
        """`value` sealed under a new key, which this write stores."""
        key_id = f"pk-{secrets.token_hex(12)}"
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE_BYTES)
        box = AESGCM(key).encrypt(nonce, value.encode(), key_id.encode())
        self.added[key_id] = key
        return {"sealed": key_id, "box": base64.b64encode(nonce + box).decode("ascii")}

    def sealed(self, personal: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of personal data (or changes to it) with its numbers sealed."""
        return {k: self.seal(v) if k in SEALED_FIELDS and isinstance(v, str) else v
                for k, v in personal.items()}

    def erase(self, value: Any) -> None:
        """Delete the key of a sealed value with this write (a plain one cannot be erased)."""
        if is_sealed(value):
            self.erased.add(value["sealed"])


def open_value(value: Any, keys: Mapping[str, bytes]) -> Any:
    """A sealed value's plain text (ERASED once its key is deleted); any other value as is."""
    if not is_sealed(value):
        return value
    key = keys.get(value["sealed"])
    if key is None:
        return ERASED
    raw = base64.b64decode(value["box"])
    return AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                               value["sealed"].encode()).decode()


def key_ids(data: Mapping[str, Any]) -> set[str]:
    """The keys the sealed values of an event's data (or of personal data) were sealed with."""
    return {v["sealed"] for holder in holders(data) for v in holder.values() if is_sealed(v)}


def opened(data: Mapping[str, Any], keys: Mapping[str, bytes]) -> dict[str, Any]:
    """An event's data (or personal data) with its sealed values opened."""
    out = {k: open_value(v, keys) for k, v in data.items()}
    for holder in HOLDERS:
        if isinstance(out.get(holder), dict):
            out[holder] = {k: open_value(v, keys) for k, v in out[holder].items()}
    return out


def holds_plain_number(data: Mapping[str, Any]) -> bool:
    """Whether an event's stored data holds a phone or id number in plain text (stored before
    sealing), which its stored bytes would show to anyone who reads them."""
    return any(isinstance(holder.get(f), str) for holder in holders(data)
               for f in SEALED_FIELDS)


def alike(stored: Any, asked: Any) -> bool:
    """Whether what a stored registration says (opened) is what a request asks for; an erased
    number matches any, since what it was can no longer be told (a resend after a withdrawal
    is recognised, not refused)."""
    if stored == ERASED:
        return True
    if isinstance(stored, dict) and isinstance(asked, dict):
        return stored.keys() == asked.keys() and all(alike(stored[k], asked[k]) for k in stored)
    return bool(stored == asked)


_CURRENT: ContextVar[KeyChanges | None] = ContextVar("vledger_key_changes", default=None)


def storing_keys(changes: KeyChanges | None) -> AbstractContextManager[None]:
    """Within the block, the recorder applies `changes` inside each insert (this thread)."""
    return holding(_CURRENT, changes)


def current_key_changes() -> KeyChanges | None:
    return _CURRENT.get()


def keys_for(recorder: Any, datas: Iterable[Mapping[str, Any]]) -> dict[str, bytes]:
    """The stored keys that open the sealed values of some events' data (one lookup; none
    when nothing is sealed). `recorder`: one of ours (ledger/sqliterecorder.py, pgrecorder.py)."""
    ids: set[str] = set()
    for data in datas:
        ids |= key_ids(data)
    return recorder.select_keys(ids) if ids else {}
