"""Bulk work (an import, a rebuild) with far fewer full runs of the cyclic garbage collector.

CPython 3.11 runs a full collection, which visits every live container object, once the older
generation has been promoted into ten times (and the objects promoted since the last full run
exceed a quarter of those it holds). An import keeps tens of thousands of volunteer aggregates
and their bookings alive, and each batch's events, stored events and outcomes live long enough
to be promoted, so full collections ran over and over, each slower than the last. Almost
nothing they find is garbage: an aggregate is freed by its reference count when it leaves the
cache.

Measured on SQLite (this machine, 2 cores), `Ledger.record_sessions` over the demo district:
200,000 sessions 7,817 sessions/s with 38 full collections, 10,165 with 4 (+30 %); 441,000
sessions 7,089 → 8,890 sessions/s (+25 %). A rebuild of every view over 450,000 events:
8.8 and 8.4 s → 8.0 and 7.7 s. With the collector off entirely the 441,000-session import was
only 2 % faster again (9,081 sessions/s): cycles are still collected, only less often.

The young generation is collected less often too (every 50,000 allocations of containers,
as the API server has it, rather than 700): a batch's events, aggregates and outcomes live
until the batch is saved, so nearly every young collection traversed them, and each tenth
one traversed the middle generation with them. Measured on SQLite, `Ledger.record_sessions`
over the 98k-event demo district (CPU time, this machine): the collector took 0.21-0.37 s
of 3.2-3.8 s with 932 young, 86 middle and 1 full collection; 0.06 s with 4 young ones.

The API server tunes the collector its own way for the whole process (`api.serving`).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FULL_COLLECTION_EVERY = 100  # promotions into the oldest generation; CPython's default is 10
YOUNG_COLLECTION_EVERY = 50_000  # container allocations; CPython's default is 700

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def bulk_collection() -> Iterator[None]:
    """Within the block, full collections come at most a tenth as often, and young ones at
    most once every YOUNG_COLLECTION_EVERY allocations; restored after.

    Blocks may nest and overlap across threads: the first to enter raises the threshold, the
    last to leave puts back what it found.
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            young, middle, old = _saved
            gc.set_threshold(max(young, YOUNG_COLLECTION_EVERY), middle,
                             max(old, FULL_COLLECTION_EVERY))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
