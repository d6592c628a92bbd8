"""The ids the ledger gives what it registers: random, or drawn from a seed for the demo.

Units, volunteers and activities get `<prefix>-<16 hex digits>`: 64 random bits from uuid4,
so two offices registering at once never collide. The demo district is deterministic for a
seed, ids included (`seeded_ids`): the same seed gives the same ids in any empty store, so
two fills can be compared, and a link into one demo district works in another.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from uuid import uuid4

_SEEDED: ContextVar[random.Random | None] = ContextVar("vledger_seeded_ids", default=None)


def new_id(prefix: str) -> str:
    """A new id with a prefix naming its kind (`unit`, `vol`, `act`)."""
    seeded = _SEEDED.get()
    digits = uuid4().hex[:16] if seeded is None else f"{seeded.getrandbits(64):016x}"
    return f"{prefix}-{digits}"


@contextmanager
def seeded_ids(seed: int) -> Iterator[None]:
    """Within the block (this thread or task), new ids follow from `seed` and their order."""
    token = _SEEDED.set(random.Random(f"vledger-ids/{seed}"))
    try:
        yield
    finally:
        _SEEDED.reset(token)
