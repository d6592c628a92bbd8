"""The audit sweep: every logged event's leaf and the published root, recomputed by the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger
from projections.audit import Auditor, SigningKey, notification_leaf_hash
from projections.runner import Runner
from projections.sweep import Sweeper, SweepStopped, last_sweep
from tests.factories import audit_runner, fill_ledger, tamper_with_events

HOUR = 3600.0


@pytest.fixture
def views(ledger: Ledger) -> Iterator[Runner]:
    runner = audit_runner(ledger, page_size=3)
    fill_ledger(ledger, sessions=4)
    runner.catch_up()
    yield runner
    runner.store.close()


@pytest.fixture
def auditor(views: Runner, tmp_path: Path) -> Auditor:
    return Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem"))


def sweeper(ledger: Ledger, auditor: Auditor, interval: float = HOUR) -> Sweeper:
    return Sweeper(ledger.recorder, auditor, interval)


def test_a_new_store_is_first_swept_an_interval_later_and_by_one_claimant(
        ledger: Ledger, auditor: Auditor) -> None:
    first, second = sweeper(ledger, auditor), sweeper(ledger, auditor)  # two processes
    now = time.time()
    assert not first.claim(now) and not second.claim(now)  # the clock started with the store
    later = now + HOUR + 1
    assert [first.claim(later), second.claim(later)] == [True, False]
    assert not second.claim(later + HOUR / 2)  # the next one is an interval after the claim
    assert second.claim(later + HOUR + 1)
    assert last_sweep(auditor.store) is None  # claimed, not swept: nothing to report yet


def test_an_untouched_store_sweeps_clean(ledger: Ledger, views: Runner,
                                         auditor: Auditor) -> None:
    auditor.checkpoint()  # published: its root and signature are checked too
    result = sweeper(ledger, auditor).sweep()
    assert result.ok and result.altered == 0 and result.detail == ""
    assert result.events == ledger.head()
    assert last_sweep(auditor.store) == result


def test_a_changed_event_and_a_deleted_one_are_found_and_named(
        ledger: Ledger, views: Runner, auditor: Auditor) -> None:
    auditor.checkpoint()
    head = ledger.head()
    tamper_with_events(views.store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
                       (b'{"minutes":600}', head - 3))
    tamper_with_events(views.store, ledger, "DELETE FROM {table} WHERE {id} = ?", (head,))
    result = sweeper(ledger, auditor).sweep()
    assert not result.ok
    assert result.altered == 2 and result.first_altered == (head - 3, head)
    assert f"positions {head - 3}, {head}" in result.detail
    assert "no longer have the root of the checkpoint" in result.detail
    assert last_sweep(auditor.store) == result  # what every worker's /readyz reports


def test_a_replaced_checkpoint_is_found_by_its_signature(ledger: Ledger, views: Runner,
                                                         auditor: Auditor) -> None:
    auditor.checkpoint()
    with views.store.transaction() as cur:  # the operator "publishes" a root of their own
        cur.execute("UPDATE audit_published SET root_hash = ?", ("00" * 32,))
    result = sweeper(ledger, auditor).sweep()
    assert not result.ok and result.altered == 0
    assert "does not bear this server's signature" in result.detail


def test_a_root_changed_under_intact_leaves_is_found(ledger: Ledger, views: Runner,
                                                     auditor: Auditor) -> None:
    """An event changed with its leaf (and the subtree hashes): every leaf matches its event,
    and the published, signed root is what the events no longer give."""
    auditor.checkpoint()
    position = ledger.head() - 2
    tamper_with_events(views.store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
                       (b'{"minutes":600}', position))
    with views.store.transaction() as cur:  # the leaf made to match the changed event
        note = next(n for n in ledger.recorder.select_notifications(position, 1))
        cur.execute("UPDATE audit_leaves SET leaf_hash = ? WHERE position = ?",
                    (notification_leaf_hash(note), position))
    result = sweeper(ledger, auditor).sweep()
    assert not result.ok and "no longer have the root of the checkpoint" in result.detail
    # Its seal no longer matches it either (bb38 F2): the sweep names the event.
    assert result.first_altered == (position,) and "no longer match their seals" in result.detail


def test_a_sweep_stops_with_its_process_and_records_nothing(ledger: Ledger, views: Runner,
                                                            auditor: Auditor) -> None:
    with pytest.raises(SweepStopped):
        sweeper(ledger, auditor).sweep(stopping=lambda: True)
    assert last_sweep(auditor.store) is None


def test_a_running_sweeper_sweeps_when_due(ledger: Ledger, views: Runner,
                                           auditor: Auditor) -> None:
    running = sweeper(ledger, auditor, interval=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while last_sweep(auditor.store) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=5)
    swept = last_sweep(auditor.store)
    assert swept is not None and swept.ok and swept.events == ledger.head()
    assert not thread.is_alive()


def test_an_event_deleted_from_the_middle_is_named_alone(ledger: Ledger, views: Runner,
                                                         auditor: Auditor) -> None:
    """bb36 F2: compared by order, one event deleted from the middle made every later one
    "altered" (36,800 of them), and the deleted one was not named. Each event is compared
    with its own position's leaf."""
    middle = ledger.head() // 2
    tamper_with_events(views.store, ledger, "DELETE FROM {table} WHERE {id} = ?", (middle,))
    result = sweeper(ledger, auditor).sweep()
    assert result.altered == 1 and result.first_altered == (middle,), result
    assert f"(position {middle})" in result.detail


def test_a_changed_subtree_hash_is_found_though_every_event_is_intact(
        ledger: Ledger, views: Runner, auditor: Auditor) -> None:
    """bb38 F6: a zeroed inner hash of the tree was served in inclusion proofs while the
    sweep, /readyz and /metrics said all was well: the sweep compared leaves only."""
    for _ in range(3):  # enough leaves for a stored subtree hash
        fill_ledger(ledger, sessions=7)
    views.catch_up()
    with views.store.transaction() as cur:
        level, index = cur.execute("SELECT level, idx FROM audit_nodes ORDER BY level, idx "
                                   "LIMIT 1").fetchone()
        cur.execute("UPDATE audit_nodes SET hash = ? WHERE level = ? AND idx = ?",
                    (bytes(32), level, index))
    result = sweeper(ledger, auditor).sweep()
    assert not result.ok and result.altered == 0, result
    assert "subtree hashes are not those of its events" in result.detail
    assert f"level {level} index {index}" in result.detail

