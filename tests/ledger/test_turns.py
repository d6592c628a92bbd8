"""Write turns on an SQLite file: one holder at a time across threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from ledger.errors import StoreBusy
from ledger.turns import WriteTurns


def _hold(database: str, held: multiprocessing.synchronize.Event,
          release: multiprocessing.synchronize.Event) -> None:
    turns = WriteTurns(Path(database))
    with turns.turn():
        held.set()
        release.wait(30)
    turns.close()


def test_a_turn_held_by_another_process_is_waited_for_then_taken(tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    other = context.Process(target=_hold, args=(str(database), held, release))
    other.start()
    try:
        assert held.wait(30)
        mine = WriteTurns(database, seconds=0.3)
        with pytest.raises(StoreBusy) as refused, mine.turn():
            pass  # the other process holds the turn: refused after 0.3 s, naming the wait
        assert "busy for 0.3 s" in refused.value.message
        began = time.monotonic()
        with pytest.raises(StoreBusy) as refused, mine.turn(0.05):
            pass  # a caller's own, shorter wait
        assert "busy for 0.05 s" in refused.value.message and time.monotonic() - began < 0.25
        threading.Timer(0.2, release.set).start()
        mine.seconds = 20
        began = time.monotonic()
        with mine.turn():
            waited = time.monotonic() - began
        assert waited >= 0.1  # it waited for the other process to let go
        mine.close()
    finally:
        release.set()
        other.join(30)


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    turns = WriteTurns(tmp_path / "ledger.db")
    inside, most = 0, 0
    guard = threading.Lock()

    def write() -> None:
        nonlocal inside, most
        for _ in range(50):
            with turns.turn():
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=write) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    turns.close()
    assert most == 1
