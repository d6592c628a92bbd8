"""Group commit: concurrent single-session writes share transactions, each keeps its answer."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ledger import Ledger
from ledger.grouping import GroupCommit
from tests.factories import (
    at,
    make_activity,
    make_volunteer,
    recorded_together,
    session_record,
    together,
)


def test_callers_waiting_together_share_a_batch_and_get_their_own_answers() -> None:
    batches: list[tuple[str, list[int]]] = []

    def double(key: str, items: Sequence[int]) -> list[int]:
        batches.append((key, list(items)))
        time.sleep(0.05)  # while one batch runs, the others queue for the next
        return [2 * i for i in items]

    group: GroupCommit[str, int, int] = GroupCommit(double)
    results = together(20, lambda i: group.submit("k", i))

    assert results == [2 * i for i in range(20)]
    assert sorted(i for _, items in batches for i in items) == list(range(20))
    assert len(batches) < 20


def test_a_lone_caller_runs_at_once() -> None:
    group: GroupCommit[str, int, int] = GroupCommit(lambda key, items: [i + 1 for i in items])
    assert group.submit("k", 1) == 2
    assert group.submit("k", 2) == 3


def test_callers_with_different_keys_never_share_a_call() -> None:
    seen: list[set[str]] = []

    def record(key: str, items: Sequence[str]) -> list[str]:
        seen.append({item.split(":")[0] for item in items})
        time.sleep(0.02)
        return [f"{key}/{item}" for item in items]

    group: GroupCommit[str, str, str] = GroupCommit(record)
    results = together(12, lambda i: group.submit(f"u{i % 3}", f"u{i % 3}:{i}"))

    assert results == [f"u{i % 3}/u{i % 3}:{i}" for i in range(12)]
    assert all(len(keys) == 1 for keys in seen)


def test_a_failed_batch_fails_its_own_callers_only() -> None:
    def record(key: str, items: Sequence[int]) -> list[int]:
        time.sleep(0.02)
        if key == "bad":
            raise RuntimeError("store went away")
        return list(items)

    group: GroupCommit[str, int, int] = GroupCommit(record)
    results = together(10, lambda i: group.submit("bad" if i % 2 else "good", i))

    for i, result in enumerate(results):
        if i % 2:
            assert isinstance(result, RuntimeError)
        else:
            assert result == i
    assert group.submit("good", 7) == 7  # the group keeps working afterwards


def test_an_item_that_fails_its_batch_fails_its_own_caller_only() -> None:
    """A batch that raises (an item it could not answer for) is run again item by item:
    the item's caller gets the error, every other caller its own answer."""
    batches: list[list[int]] = []

    def record(key: str, items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        time.sleep(0.02)
        if 13 in items:
            raise OverflowError("an item the batch could not answer for")
        return list(items)

    group: GroupCommit[str, int, int] = GroupCommit(record)
    results = together(20, lambda i: group.submit("k", 13 if i == 5 else 100 + i))

    assert isinstance(results[5], OverflowError)
    assert [r for i, r in enumerate(results) if i != 5] == [100 + i for i in range(20) if i != 5]
    assert any(len(b) > 1 and 13 in b for b in batches)  # it did share a batch, which failed


def test_a_batch_the_store_failed_is_not_run_again_item_by_item() -> None:
    """When the store itself failed, every item alone would fail again, each after its own
    wait: the callers share the error at once."""
    calls: list[list[int]] = []

    def record(key: str, items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.02)
        raise TimeoutError("no connection to the store")

    group: GroupCommit[str, int, int] = GroupCommit(
        record, alone_after=lambda error: not isinstance(error, TimeoutError))
    results = together(12, lambda i: group.submit("k", i))

    assert all(isinstance(r, TimeoutError) for r in results)
    assert sum(len(c) for c in calls) == 12  # each item was tried once, in whatever batch


def test_a_batch_never_exceeds_its_limit() -> None:
    sizes: list[int] = []

    def record(key: str, items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.02)
        return list(items)

    group: GroupCommit[str, int, int] = GroupCommit(record, max_batch=3)
    assert together(15, lambda i: group.submit("k", i)) == list(range(15))
    assert max(sizes) <= 3


def test_concurrent_record_session_calls_answer_as_if_alone(ledger: Ledger) -> None:
    activity = make_activity(ledger)
    people = [make_volunteer(ledger) for _ in range(8)]
    other = make_volunteer(ledger)
    records = [session_record(p, activity, at(8), at(9), source_record_id=f"g-{i}")
               for i, p in enumerate(people)]
    records += [
        records[0],  # the same record twice: one is new, the other a duplicate
        session_record(people[1], activity, at(8, 30), at(9, 30), source_record_id="g-lap"),
        session_record(other, activity, at(8), at(9), source_record_id="g-3"),  # reused id
        session_record("no-such-volunteer", activity, at(8), at(9), source_record_id="g-x"),
    ]
    head = ledger.head()
    results, sizes = recorded_together(ledger, records)

    def kinds(*indexes: int) -> list[str]:
        return sorted(type(results[i]).__name__ for i in indexes)

    for i in (2, 4, 5, 6, 7):
        assert type(results[i]).__name__ == "SessionWritten" and results[i].created
    assert results[0].id == results[8].id
    assert sorted(r.created for r in (results[0], results[8])) == [False, True]
    assert kinds(1, 9) == ["OverlappingSession", "SessionWritten"]
    assert kinds(3, 10) == ["DuplicateRecordConflict", "SessionWritten"]
    assert kinds(11) == ["UnknownReference"]
    assert all(r.position > head for r in results if not isinstance(r, Exception))
    # exactly 8 sessions, each with its booking: nothing written twice, nothing lost
    assert ledger.head() == head + 2 * 8
    assert sum(len(ledger.get_volunteer(v).sessions) for v in [*people, other]) == 8
    assert sum(sizes) == len(records) and max(sizes) > 1  # some callers shared a transaction
