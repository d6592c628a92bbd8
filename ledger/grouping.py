"""Group commit: concurrent callers of one write share a transaction.

A store with one writer at a time (SQLite) or one fsync per commit (PostgreSQL) spends most of
a single-record write on the commit, and concurrent writers queue for it one by one. Here the
first caller to arrive leads: it takes every request waiting at that moment and runs them as
one batch; callers who arrive meanwhile wait and the next of them leads the next batch. A
caller alone runs a batch of one at once, so nothing waits for a timer; under load a batch
holds whoever queued during the previous one.

Each caller gets its own answer, or its own exception, exactly as if it had written alone:
the batch function answers per item, and a batch that fails as a whole is run again item by
item, so an item the batch could not answer for fails its own caller only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - an item
O = TypeVar("O")  # noqa: E741 - its outcome

MAX_BATCH = 500


class _Slot(Generic[K, I, O]):
    __slots__ = ("done", "error", "item", "key", "lead", "outcome")

    def __init__(self, key: K, item: I) -> None:
        self.key = key
        self.item = item
        self.done = threading.Event()
        self.lead = False
        self.outcome: O | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[K, I, O]):
    """Runs `batch(key, items) -> outcomes` for concurrent `submit(key, item)` calls."""

    def __init__(self, batch: Callable[[K, Sequence[I]], Sequence[O]],
                 max_batch: int = MAX_BATCH,
                 alone_after: Callable[[Exception], bool] = lambda error: True) -> None:
        self._batch = batch
        self._max = max_batch
        # Whether a batch that failed with this error is run again item by item: not when
        # the store itself failed (every item would fail again, one wait after another).
        self._alone_after = alone_after
        self._lock = threading.Lock()
        self._waiting: list[_Slot[K, I, O]] = []
        self._leading = False

    def submit(self, key: K, item: I) -> O:
        """The outcome of `item`, written in a batch with whatever else is waiting."""
        slot: _Slot[K, I, O] = _Slot(key, item)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.done.wait()
            if not slot.lead:
                return self._answer(slot)
        with self._lock:
            taken, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
        try:
            self._run(taken)
        finally:
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False
        return self._answer(slot)

    def _run(self, taken: list[_Slot[K, I, O]]) -> None:
        groups: dict[K, list[_Slot[K, I, O]]] = {}
        for slot in taken:
            groups.setdefault(slot.key, []).append(slot)
        for key, slots in groups.items():
            try:
                outcomes = self._batch(key, [s.item for s in slots])
                for slot, outcome in zip(slots, outcomes, strict=True):
                    slot.outcome = outcome
            except Exception as error:
                if len(slots) == 1 or not self._alone_after(error):
                    for slot in slots:
                        slot.error = error
                    continue
                # Nothing of the batch was stored. Whatever failed it (one caller's item the
                # batch could not answer for, or the store), each caller is answered as if it
                # had written alone: one bad item never fails the others.
                for slot in slots:
                    try:
                        [slot.outcome] = self._batch(key, [slot.item])
                    except Exception as alone:
                        slot.error = alone
            except BaseException as error:  # an interrupt: every caller of the batch learns
                for slot in slots:
                    slot.error = error
        for slot in taken:
            slot.lead = False
            slot.done.set()

    @staticmethod
    def _answer(slot: _Slot[K, I, O]) -> O:
        if slot.error is not None:
            raise slot.error
        assert slot.outcome is not None
        return slot.outcome
