"""A store's KEKs at start, in a rotation, and as `vledger keys status` shows them
(ledger/keks.py says what they are).

At start: a store whose keys are wrapped under a KEK the file does not hold is refused
(KekMissing, naming the file and the KEK); a KEK is made only when the store lists none the
file holds and no key is wrapped under a missing one; keys stored in plain by an older ledger
are wrapped under the current KEK, in one transaction.

A rotation makes a new KEK and adds it to the file, lists it as current (new keys are wrapped
under it from then on, in this process at once, in others after their first refused write),
re-wraps every key under it a page per transaction, then, with writers held, re-wraps the few
written meanwhile under the old one and deletes the old KEK's row, and last drops the old KEK
from the file. A backup taken before an erasure holds the erased key wrapped under a KEK that
no longer exists anywhere. Starts and rotations of one store take turns (the file's lock, and
an advisory lock on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.keks import KEK_FILE_ENV, KekMissing, KeyRing
from ledger.keytable import KeyTable
from ledger.settings import StoreLocation

Writing = Callable[[], AbstractContextManager[None]]


@contextmanager
def _one_at_a_time(location: StoreLocation, ring: KeyRing) -> Iterator[None]:
    with ring.file.locked():
        if location.kind != "postgres":
            yield
            return
        with location.session_lock("vledger-keks"):
            yield


def unchecked_ring(recorder: Any, location: StoreLocation, path: Path) -> KeyRing:
    """The KEKs of a store, neither checked nor made: for a command that opens no number
    (`vledger verify` needs nothing secret). A number opened all the same loads its KEK from
    the file then."""
    return KeyRing(path, KeyTable(recorder, location.kind == "postgres").current)


def open_ring(recorder: Any, location: StoreLocation, path: Path, writing: Writing) -> KeyRing:
    """The KEKs of a store, checked and set up as the module says."""
    table = KeyTable(recorder, location.kind == "postgres", writing)
    ring = KeyRing(path, table.current)
    with _one_at_a_time(location, ring):
        on_disk = ring.file.read()
        listed = table.keks_listed()
        lost = [k for k in listed if k not in on_disk and table.holds_keys_under(k)]
        if lost:
            raise KekMissing(
                f"not starting: the store ({location.describe()}) holds keys of personal data "
                f"wrapped under KEK {', '.join(lost)}, which the KEK file {path} does not hold"
                f"{'' if path.exists() else ' (there is no such file)'}. Set {KEK_FILE_ENV} "
                "to the file that holds it; no new KEK is made, as every phone and id number "
                "sealed under the old one would then be unreadable")
        if table.current() not in on_disk:
            on_disk = on_disk or ring.file.create()
            table.make_current(list(on_disk)[-1],
                               forget=[k for k in listed if k not in on_disk])
        if table.holds_keys_under(None):
            table.wrap_plain(ring)
    return ring


@dataclass(frozen=True)
class Rotated:
    """What a rotation did."""

    old: list[str]
    new: str
    rewrapped: int  # keys re-wrapped page by page
    late: int  # keys written under an old KEK meanwhile, re-wrapped with writers held
    path: Path


def rotate(recorder: Any, location: StoreLocation, ring: KeyRing,
           writing: Writing) -> Rotated:
    """Move every key to a new KEK and forget the old ones (see the module)."""
    table = KeyTable(recorder, location.kind == "postgres", writing)
    with _one_at_a_time(location, ring):
        new = ring.file.add()
        table.make_current(new)
        ring.stale = True
        rewrapped = table.rewrap_all(ring, [k for k in table.keks_listed() if k != new])
        late, old = table.finish_rotation(ring, new)
        ring.file.keep_only(new)
    return Rotated(old, new, rewrapped, late, ring.path)


@dataclass(frozen=True)
class KekStatus:
    """The current KEK, keys per KEK id (None: in plain), the file and the KEKs it holds."""

    current: str | None
    keys: dict[str | None, int]
    path: Path
    in_file: list[str]


def status(recorder: Any, location: StoreLocation, ring: KeyRing) -> KekStatus:
    table = KeyTable(recorder, location.kind == "postgres")
    return KekStatus(table.current(), table.counts(), ring.path, list(ring.file.read()))
