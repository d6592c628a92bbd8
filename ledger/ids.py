"""The ids the ledger gives what it registers: random, or drawn from a seed for the demo.

Units, volunteers and activities get `<prefix>-<16 hex digits>`: 64 random bits from uuid4,
so two offices registering at once never collide. The demo district is deterministic for a
seed, ids included (`seeded_ids`): the same seed gives the same ids in any empty store, so
two fills can be compared, and a link into one demo district works in another.

A request sent with an idempotency key gets ids drawn from the key (`keyed_ids`): sent again,
it names the same new unit, volunteer or activity, which the store already holds, so it is
recognised (`LedgerBase.keyed`) instead of registered twice.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from uuid import uuid4

_SEEDED: ContextVar[random.Random | None] = ContextVar("vledger_seeded_ids", default=None)
_KEYED: ContextVar[KeyedIds | None] = ContextVar("vledger_keyed_ids", default=None)


class KeyedIds:
    """The ids drawn from one request's key, in the order the request asks for them."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.issued: list[str] = []

    def draw(self, prefix: str) -> str:
        seed = f"{self.scope}\x00{prefix}\x00{len(self.issued)}".encode()
        the_id = f"{prefix}-{hashlib.sha256(seed).hexdigest()[:16]}"
        self.issued.append(the_id)
        return the_id


def new_id(prefix: str) -> str:
    """A new id with a prefix naming its kind (`unit`, `vol`, `act`)."""
    keyed = _KEYED.get()
    if keyed is not None:
        return keyed.draw(prefix)
    seeded = _SEEDED.get()
    digits = uuid4().hex[:16] if seeded is None else f"{seeded.getrandbits(64):016x}"
    return f"{prefix}-{digits}"


def first_keyed_id(scope: str, prefix: str) -> str:
    """The first id of a kind a request with this key draws (`keyed_ids`)."""
    return KeyedIds(scope).draw(prefix)


def keyed_ids_issued() -> list[str]:
    """The ids drawn so far from the key of the request being served ([] without a key)."""
    keyed = _KEYED.get()
    return keyed.issued if keyed is not None else []


@contextmanager
def keyed_ids(scope: str) -> Iterator[None]:
    """Within the block, new ids are drawn from `scope` (a caller and its idempotency key)."""
    token = _KEYED.set(KeyedIds(scope))
    try:
        yield
    finally:
        _KEYED.reset(token)


@contextmanager
def seeded_ids(seed: int) -> Iterator[None]:
    """Within the block (this thread or task), new ids follow from `seed` and their order."""
    token = _SEEDED.set(random.Random(f"vledger-ids/{seed}"))
    try:
        yield
    finally:
        _SEEDED.reset(token)
