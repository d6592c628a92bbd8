"""Bulk work runs with full collections far less often, and leaves the collector as it was."""

from __future__ import annotations

import gc
import threading

import pytest

from ledger import Ledger
from ledger.collector import FULL_COLLECTION_EVERY, YOUNG_COLLECTION_EVERY, bulk_collection
from ledger.demo import generate_district

pytestmark = pytest.mark.usefixtures("default_gc_thresholds")


def test_a_block_raises_the_young_and_oldest_thresholds_and_puts_them_back() -> None:
    with bulk_collection():
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, 10, FULL_COLLECTION_EVERY)
    assert gc.get_threshold() == (700, 10, 10)


def test_an_error_in_the_block_still_puts_the_threshold_back() -> None:
    with pytest.raises(RuntimeError), bulk_collection():
        raise RuntimeError("an import that failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_set_by_the_process_is_kept() -> None:
    gc.set_threshold(50_000, 20, 500)  # e.g. a tuned server process
    with bulk_collection():
        assert gc.get_threshold() == (50_000, 20, 500)
    assert gc.get_threshold() == (50_000, 20, 500)


def test_overlapping_blocks_in_two_threads_restore_once_the_last_one_ends() -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with bulk_collection():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with bulk_collection():
        thread.start()
        assert inside.wait(5)
    assert gc.get_threshold()[2] == FULL_COLLECTION_EVERY  # the other thread is still inside
    release.set()
    thread.join(5)
    assert gc.get_threshold() == (700, 10, 10)


def test_the_demo_records_its_sessions_inside_a_block(ledger: Ledger,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    record = ledger.record_sessions

    def watched(*args: object, **kwargs: object) -> object:
        seen.append(gc.get_threshold()[2])
        return record(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger, "record_sessions", watched)
    generate_district(ledger, 10, 50, 3)
    assert seen and set(seen) == {FULL_COLLECTION_EVERY}
    assert gc.get_threshold() == (700, 10, 10)
