"""What a write was checked against, checked again where writes take turns.

A use case checks its request against the ledger (the activity is not cancelled, the units
are open, no service is credited after a closing day), then saves. Between the two another
request may change what was checked: a unit closed after a session was checked against it,
a session recorded after a closure was checked. Optimistic versions catch a race only on the
aggregates a write saves, and a session does not save its units (every session of a unit
would then contend on it).

So a write names what it relied on, and the recorder checks it again inside the insert, where
writers take turns (the EXCLUSIVE lock on the events table on PostgreSQL, the write turn and
the transaction on SQLite), so nothing can change it between that check and the commit:

- `unchanged`: aggregates (by id) that must still be at the version the write read;
- `after` and `tail`: the events stored after a position (the one the views were read at)
  must not contradict the decision; `tail` says why one does, or None.

A guard that fails raises the library's IntegrityError, as a lost race on a saved aggregate
does: the use case runs again from the store (`LedgerBase._retrying`) and decides anew.

Every write also relies on its caller: a request with a bearer token was let in because the
token's grant (ledger/access.py) was at a version that is live. A revocation adds an event to
the grant, so the grant is one more aggregate of `unchanged` for each save made for that caller
(`relying_on_grant`, `with_grant`): a request let in before a revocation but reaching its
insert after it stores nothing (bb20 F1: such writes were still stored up to 2 s later).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from eventsourcing.persistence import IntegrityError, StoredEvent

Tail = Callable[[Sequence[StoredEvent]], str | None]
V = TypeVar("V")


@dataclass(frozen=True)
class WriteGuard:
    unchanged: Mapping[str, int] = field(default_factory=dict)
    after: int | None = None
    tail: Tail | None = None


@dataclass(frozen=True)
class Grant:
    """The grant a caller was authenticated with (its id) and the version it was live at."""

    id: str
    version: int


_CURRENT: ContextVar[WriteGuard | None] = ContextVar("vledger_write_guard", default=None)
_GRANT: ContextVar[Grant | None] = ContextVar("vledger_grant", default=None)


@contextmanager
def holding(var: ContextVar[V], value: V) -> Iterator[None]:
    """Within the block, `var` holds `value` (in this thread), and what it held before after."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def guarding(guard: WriteGuard | None) -> AbstractContextManager[None]:
    """Within the block, the recorder checks `guard` inside each insert (this thread)."""
    return holding(_CURRENT, guard)


def current_guard() -> WriteGuard | None:
    return _CURRENT.get()


def relying_on_grant(grant: Grant | None) -> AbstractContextManager[None]:
    """Within the block, every save relies on `grant` being unchanged (None: on no grant)."""
    return holding(_GRANT, grant)


def rely_on_grant(grant: Grant) -> None:
    """Every later save of the current context relies on `grant`: for the API's
    authentication, which cannot wrap the route it admits (a request runs in a context of its
    own, which its route's worker thread copies)."""
    _GRANT.set(grant)


def current_grant() -> Grant | None:
    return _GRANT.get()


def with_grant(guard: WriteGuard | None) -> WriteGuard | None:
    """`guard`, also relying on the caller's grant when one is in force."""
    grant = _GRANT.get()
    if grant is None:
        return guard
    base = guard or WriteGuard()
    return replace(base, unchanged={**base.unchanged, grant.id: grant.version})


def check_unchanged(guard: WriteGuard, cur: Any, table: str) -> None:
    """Check a guard's `unchanged` with a cursor of the inserting SQLite transaction;
    IntegrityError when an aggregate has moved. (On PostgreSQL the check is a condition of
    the INSERT itself: ledger/pgrecorder.py.)"""
    ids = sorted(guard.unchanged)
    stored: dict[str, int] = {}
    for start in range(0, len(ids), 500):  # SQLite's limit on parameters
        chunk = ids[start:start + 500]
        cur.execute(f"SELECT originator_id, MAX(originator_version) FROM {table} "
                    f"WHERE originator_id IN ({', '.join('?' * len(chunk))}) "
                    "GROUP BY originator_id", chunk)
        stored.update({row[0]: row[1] for row in cur.fetchall()})
    moved = [i for i in ids if stored.get(i) != guard.unchanged[i]]
    if moved:
        raise IntegrityError(f"{', '.join(moved)} changed after this write was checked "
                             "against it")


def check_tail(guard: WriteGuard, cur: Any, table: str, postgres: bool) -> None:
    """Check a guard's `after` and `tail` with a cursor of the inserting transaction (`table`:
    the events table, schema-qualified on PostgreSQL); IntegrityError when an event stored
    since contradicts the write."""
    if guard.after is None or guard.tail is None:
        return
    if postgres:
        # Never prepared: a generic plan knows no `after` and may read every event to find
        # the few stored since (a custom plan reads them from the notification_id index).
        cur.execute("SELECT originator_id, originator_version, topic, state "
                    f"FROM {table} WHERE notification_id > %s ORDER BY notification_id",
                    (guard.after,), prepare=False)
        rows = [StoredEvent(r["originator_id"], r["originator_version"], r["topic"],
                            bytes(r["state"])) for r in cur.fetchall()]
    else:
        cur.execute("SELECT originator_id, originator_version, topic, state "
                    f"FROM {table} WHERE rowid > ? ORDER BY rowid", (guard.after,))
        rows = [StoredEvent(r[0], r[1], r[2], bytes(r[3])) for r in cur.fetchall()]
    why = guard.tail(rows) if rows else None
    if why is not None:
        raise IntegrityError(why)
