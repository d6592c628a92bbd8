"""ReadModels remembers aggregate answers per view position, computing each once at a time."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import projections.models
from ledger import Ledger
from projections import ReadModels
from tests.factories import make_unit


def test_many_readers_missing_at_once_compute_the_answer_once(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch) -> None:
    make_unit(ledger, "community")
    models.catch_up()
    calls: list[int] = []
    real = projections.models.unit_rankings

    def slow(*args: Any) -> Any:
        calls.append(1)
        time.sleep(0.2)  # long enough for every reader to arrive while it runs
        return real(*args)

    monkeypatch.setattr(projections.models, "unit_rankings", slow)
    start = threading.Barrier(12)
    answers: list[Any] = []

    def read() -> None:
        start.wait(timeout=30)
        answers.append(models.unit_rankings("community", year=2017))

    threads = [threading.Thread(target=read) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(answers) == 12 and all(a == answers[0] for a in answers)
    assert len(calls) == 1


def test_a_new_event_makes_the_next_read_compute_again(ledger: Ledger,
                                                       models: ReadModels) -> None:
    make_unit(ledger, "community")
    models.catch_up()
    first = models.unit_rankings("community", year=2017)
    assert models.unit_rankings("community", year=2017) == first
    make_unit(ledger, "community")
    models.catch_up()
    assert len(models.unit_rankings("community", year=2017)) == len(first) + 1
