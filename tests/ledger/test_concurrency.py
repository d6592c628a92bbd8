"""Two writers on one store: never both win, never a silent overwrite, never counted twice."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Sequence
from datetime import date
from typing import Any

import pytest

from ledger import Ledger, SessionRecord, Settings
from ledger.aggregate import LedgerAggregate
from ledger.errors import ClosedReference, ConcurrentChange
from ledger.guards import WriteGuard
from tests.factories import (
    ADMIN,
    at,
    lands_before_next_save,
    live_minutes,
    make_activity,
    make_long_activity,
    make_unit,
    make_volunteer,
    serve,
    session_record,
)

ROUNDS = 6
LOSING = {"OverlappingSession", "ConcurrentChange"}


class RacingLedger(Ledger):
    """A ledger that waits for its rival before its first write: both read before either writes."""

    name = Ledger.name  # a subclass would otherwise get tables of its own on PostgreSQL

    def __init__(self, settings: Settings, barrier: threading.Barrier) -> None:
        super().__init__(settings)
        self.barrier = barrier
        self.waited = False

    def _save(self, *aggregates: LedgerAggregate | None, guard: WriteGuard | None = None) -> int:
        if not self.waited:
            self.waited = True
            self.barrier.wait(timeout=30)
        return super()._save(*aggregates, guard=guard)


def race(settings: Settings, records: Sequence[SessionRecord]) -> list[Any]:
    """Record each record from its own ledger in its own thread; the result or error of each."""
    barrier = threading.Barrier(len(records))
    ledgers = [RacingLedger(settings, barrier) for _ in records]
    results: list[Any] = [None] * len(records)

    def write(i: int) -> None:
        try:
            results[i] = ledgers[i].record_session(ADMIN, records[i])
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(records))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for the_ledger in ledgers:
        the_ledger.close()
    return results


def recorded_events(ledger: Ledger, session_id: str) -> int:
    return len(list(ledger.events.get(session_id)))


def test_of_two_racing_overlapping_sessions_exactly_one_wins(ledger: Ledger,
                                                            settings: Settings) -> None:
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    results = race(settings, [session_record(volunteer, activity, at(9), at(11)),
                              session_record(volunteer, activity, at(10), at(12))])
    assert sorted(type(r).__name__ for r in results) == ["OverlappingSession", "SessionWritten"]


def test_two_racing_overlapping_sessions_are_never_both_stored(ledger: Ledger,
                                                               settings: Settings) -> None:
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    race(settings, [session_record(volunteer, activity, at(9), at(11)),
                    session_record(volunteer, activity, at(10), at(12))])
    assert len(ledger.get_volunteer(volunteer).sessions) == 1


def test_a_record_sent_twice_at_once_is_stored_once(ledger: Ledger, settings: Settings) -> None:
    same = session_record(make_volunteer(ledger), make_activity(ledger), source_record_id="r-1")
    results = race(settings, [same, same])
    assert (len({r.id for r in results}), sorted(r.created for r in results),
            recorded_events(ledger, results[0].id)) == (1, [False, True], 1)


def test_a_source_record_id_raced_for_two_volunteers_is_stored_for_one(
        ledger: Ledger, settings: Settings) -> None:
    activity = make_activity(ledger)
    first, second = make_volunteer(ledger), make_volunteer(ledger)
    results = race(settings, [session_record(first, activity, source_record_id="r-1"),
                              session_record(second, activity, source_record_id="r-1")])
    assert sorted(type(r).__name__ for r in results) == ["DuplicateRecordConflict",
                                                         "SessionWritten"]


def test_two_racing_corrections_leave_the_calendar_and_the_session_in_agreement(
        ledger: Ledger, settings: Settings) -> None:
    volunteer = make_volunteer(ledger)
    session = ledger.record_session(ADMIN, session_record(volunteer, make_activity(ledger)))
    barrier = threading.Barrier(2)
    ledgers = [RacingLedger(settings, barrier) for _ in range(2)]

    outcomes: dict[int, str] = {}

    def correct(i: int) -> None:
        try:
            ledgers[i].correct_session(ADMIN, session.id, at(9), at(11 + i), "late sheet")
            outcomes[i] = "corrected"
        except ConcurrentChange:
            outcomes[i] = "refused"

    threads = [threading.Thread(target=correct, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for the_ledger in ledgers:
        the_ledger.close()
    # The one that lost is refused: it chose its times without knowing of the other's.
    assert sorted(outcomes.values()) == ["corrected", "refused"]
    winner = next(i for i, outcome in outcomes.items() if outcome == "corrected")
    stored = ledger.get_session(session.id)
    assert (stored.ended_at, stored.version) == (at(11 + winner), 2)
    booked = ledger.get_volunteer(volunteer).sessions[session.id]
    assert booked[:2] == [stored.started_at.timestamp(), stored.ended_at.timestamp()]


# -- two processes ---------------------------------------------------------------------------


def _process_writer(database_url: str, records: list[SessionRecord],
                    barrier: Any, answers: Any) -> None:
    """Record each record after all writers are ready; report the outcome of each."""
    the_ledger = Ledger(Settings(database_url=database_url))
    try:
        for rec in records:
            barrier.wait(timeout=60)
            try:
                written = the_ledger.record_session(ADMIN, rec)
                answers.put((rec.volunteer_id, "SessionWritten", written.id))
            except Exception as error:
                answers.put((rec.volunteer_id, type(error).__name__, None))
    finally:
        the_ledger.close()


def run_processes(database_url: str, per_process: list[list[SessionRecord]]) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(per_process))
    answers = context.Queue()
    processes = [context.Process(target=_process_writer,
                                 args=(database_url, records, barrier, answers))
                 for records in per_process]
    for process in processes:
        process.start()
    results = [answers.get(timeout=120) for records in per_process for _ in records]
    for process in processes:
        process.join(timeout=60)
    assert all(p.exitcode == 0 for p in processes)
    answers.close()
    answers.join_thread()
    return results


@pytest.fixture
def volunteers(ledger: Ledger) -> list[str]:
    return [make_volunteer(ledger) for _ in range(ROUNDS)]


def test_two_processes_recording_overlapping_sessions_never_both_win(
        ledger: Ledger, database_url: str, volunteers: list[str]) -> None:
    activity = make_activity(ledger)
    results = run_processes(database_url, [
        [session_record(v, activity, at(9), at(11)) for v in volunteers],
        [session_record(v, activity, at(10), at(12)) for v in volunteers],
    ])
    outcomes = {v: sorted(kind for vid, kind, _ in results if vid == v) for v in volunteers}
    stored = {v: len(ledger.get_volunteer(v).sessions) for v in volunteers}
    assert all(kinds[1] == "SessionWritten" and kinds[0] in LOSING
               for kinds in outcomes.values()), outcomes
    assert set(stored.values()) == {1}


def test_two_processes_sending_the_same_record_store_one_session(
        ledger: Ledger, database_url: str, volunteers: list[str]) -> None:
    activity = make_activity(ledger)
    records = [session_record(v, activity, source_record_id=f"sheet-{v}") for v in volunteers]
    results = run_processes(database_url, [records, records])
    ids = {v: {sid for vid, _kind, sid in results if vid == v} for v in volunteers}
    assert all(len(session_ids) == 1 and None not in session_ids for session_ids in ids.values())
    assert all(recorded_events(ledger, next(iter(s))) == 1 for s in ids.values())
    assert {live_minutes(ledger, v) for v in volunteers} == {60}



def _process_starter(database_url: str, rounds: int, barrier: Any, answers: Any) -> None:
    """Open and close a ledger several times, each time together with the other processes."""
    for _ in range(rounds):
        barrier.wait(timeout=60)
        try:
            Ledger(Settings(database_url=database_url)).close()
            answers.put("started")
        except Exception as error:
            answers.put(f"{type(error).__name__}: {error}")


def test_ledgers_started_by_several_processes_at_once_all_start(ledger: Ledger,
                                                               database_url: str) -> None:
    processes, rounds = 4, 5
    context = multiprocessing.get_context("spawn")
    barrier, answers = context.Barrier(processes), context.Queue()
    starters = [context.Process(target=_process_starter,
                                args=(database_url, rounds, barrier, answers))
                for _ in range(processes)]
    for process in starters:
        process.start()
    results = [answers.get(timeout=120) for _ in range(processes * rounds)]
    for process in starters:
        process.join(timeout=60)
    answers.close()
    answers.join_thread()
    assert set(results) == {"started"}


# -- what a write was checked against changes before it is saved (ledger/guards.py) -----------


@pytest.mark.parametrize("change", ["unit closed", "activity cancelled"])
def test_a_session_checked_before_what_it_relied_on_changed_is_refused_when_stored(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    unit = make_unit(ledger)
    volunteer = make_volunteer(ledger, make_unit(ledger))
    activity = make_long_activity(ledger, unit)
    ran = lands_before_next_save(ledger, monkeypatch, {
        "unit closed": lambda: ledger.close_unit(ADMIN, unit, date(2017, 3, 1), "merged"),
        "activity cancelled": lambda: ledger.cancel_activity(ADMIN, activity, "rain"),
    }[change])
    with pytest.raises(ClosedReference):
        serve(ledger, volunteer, activity, date(2017, 3, 5))
    assert ran and live_minutes(ledger, volunteer) == 0


def test_a_transfer_checked_before_its_unit_closed_is_refused_when_stored(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = make_unit(ledger)
    volunteer = make_volunteer(ledger, make_unit(ledger))
    ran = lands_before_next_save(ledger, monkeypatch, lambda: ledger.close_unit(
        ADMIN, unit, date(2017, 3, 1), "merged"))
    with pytest.raises(ClosedReference):
        ledger.transfer_volunteer(ADMIN, volunteer, unit, date(2017, 2, 1))
    assert ran and [u for _, u in ledger.get_volunteer(volunteer).memberships] != [unit]
    assert len(ledger.get_volunteer(volunteer).memberships) == 1


def test_a_session_whose_unit_only_changed_name_meanwhile_is_stored(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = make_unit(ledger)
    volunteer = make_volunteer(ledger, unit)
    activity = make_long_activity(ledger, unit)
    lands_before_next_save(ledger, monkeypatch, lambda: ledger.rename_unit(ADMIN, unit, "新"))
    serve(ledger, volunteer, activity, date(2017, 3, 5))  # checked again, and still open
    assert live_minutes(ledger, volunteer) == 60


@pytest.mark.parametrize("kind", ["child unit", "volunteer", "activity"])
def test_what_names_a_unit_checked_before_it_closed_is_refused_when_stored(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Nothing new may refer to a closed unit: a registration naming it that was checked
    just before it closed is checked again, and refused (an outside tester stored 31 of 90)."""
    unit = make_unit(ledger, "town")
    head = ledger.head()
    lands_before_next_save(ledger, monkeypatch, lambda: ledger.close_unit(
        ADMIN, unit, date(2017, 3, 1), "merged"))
    with pytest.raises(ClosedReference):
        {"child unit": lambda: make_unit(ledger, "community", parent_id=unit),
         "volunteer": lambda: make_volunteer(ledger, unit),
         "activity": lambda: make_long_activity(ledger, unit)}[kind]()
    assert ledger.head() == head + 1  # the closure alone
