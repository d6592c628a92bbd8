"""Batches: every record checked by the same rules, one outcome each, one transaction."""

from __future__ import annotations

import pytest

from ledger import Ledger
from ledger.errors import (
    DuplicateRecordConflict,
    Forbidden,
    InvalidField,
    OverlappingSession,
    UnknownReference,
)
from tests.factories import (
    ADMIN,
    COMMITTEE,
    at,
    live_minutes,
    make_activity,
    make_volunteer,
    record,
    recorder_of,
    session_record,
)


def test_each_record_of_a_batch_gets_its_own_outcome(ledger: Ledger, volunteer: str,
                                                     activity: str) -> None:
    record(ledger, volunteer, activity, at(8), at(9), source_record_id="old")
    result = ledger.record_sessions(ADMIN, [
        session_record(volunteer, activity, at(10), at(11)),
        session_record(volunteer, activity, at(8), at(9), source_record_id="old"),
        session_record(volunteer, activity, at(12), at(11)),
    ])
    assert [o.status for o in result.outcomes] == ["accepted", "duplicate", "rejected"]


def test_a_rejected_record_carries_its_error(ledger: Ledger, volunteer: str,
                                             activity: str) -> None:
    result = ledger.record_sessions(ADMIN, [session_record(volunteer, activity, at(12), at(11)),
                                            session_record(volunteer, activity)])
    error = result.outcomes[0].error
    assert isinstance(error, InvalidField) and error.field == "ended_at"


def test_one_bad_record_does_not_block_the_others(ledger: Ledger, volunteer: str,
                                                  activity: str) -> None:
    result = ledger.record_sessions(ADMIN, [
        session_record(volunteer, activity, at(9), at(10)),
        session_record("vol-nope", activity, at(9), at(10)),
        session_record(volunteer, activity, at(10), at(11)),
    ])
    assert (result.count("accepted"), result.count("rejected"),
            live_minutes(ledger, volunteer)) == (2, 1, 120)


def test_an_unknown_reference_in_a_batch_names_its_field(ledger: Ledger, volunteer: str) -> None:
    result = ledger.record_sessions(ADMIN, [session_record(volunteer, "act-nope"),
                                            session_record(volunteer, "act-nope")])
    error = result.outcomes[1].error
    assert isinstance(error, UnknownReference) and error.field == "activity_id"


def test_a_batch_reports_the_minutes_of_each_accepted_record(ledger: Ledger, volunteer: str,
                                                             activity: str) -> None:
    result = ledger.record_sessions(ADMIN, [
        session_record(volunteer, activity, at(9), at(10, 30)),
        session_record(volunteer, activity, at(11), at(11, 1, 59)),
    ])
    assert [o.minutes for o in result.outcomes] == [90, 1]


def test_the_same_record_twice_in_one_batch_is_a_duplicate(ledger: Ledger, volunteer: str,
                                                           activity: str) -> None:
    same = session_record(volunteer, activity, source_record_id="r-1")
    result = ledger.record_sessions(ADMIN, [same, same])
    first, second = result.outcomes
    assert (first.status, second.status, second.session_id, live_minutes(ledger, volunteer)) == (
        "accepted", "duplicate", first.session_id, 60)


def test_a_source_record_id_reused_for_another_volunteer_in_one_batch_conflicts(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    result = ledger.record_sessions(ADMIN, [
        session_record(volunteer, activity, source_record_id="r-1"),
        session_record(make_volunteer(ledger), activity, source_record_id="r-1"),
    ])
    error = result.outcomes[1].error
    assert isinstance(error, DuplicateRecordConflict) and error.field == "source_record_id"


def test_a_source_record_id_reused_for_another_volunteer_across_batches_conflicts(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    ledger.record_sessions(ADMIN, [session_record(volunteer, activity, source_record_id="r-1"),
                                   session_record(volunteer, activity, at(11), at(12))])
    other = make_volunteer(ledger)
    result = ledger.record_sessions(ADMIN, [
        session_record(other, activity, source_record_id="r-1"),
        session_record(other, activity, at(11), at(12)),
    ])
    assert ([o.status for o in result.outcomes], type(result.outcomes[0].error)) == (
        ["rejected", "accepted"], DuplicateRecordConflict)


def test_a_source_record_id_reused_across_batches_is_not_counted_for_the_other_volunteer(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    ledger.record_sessions(ADMIN, [session_record(volunteer, activity, source_record_id="r-1"),
                                   session_record(volunteer, activity, at(11), at(12))])
    other = make_volunteer(ledger)
    ledger.record_sessions(ADMIN, [session_record(other, activity, source_record_id="r-1"),
                                   session_record(other, activity, at(11), at(12))])
    assert (live_minutes(ledger, volunteer), live_minutes(ledger, other)) == (120, 60)


def test_overlapping_records_in_one_batch_keep_only_the_first(ledger: Ledger, volunteer: str,
                                                              activity: str) -> None:
    result = ledger.record_sessions(ADMIN, [
        session_record(volunteer, activity, at(9), at(11)),
        session_record(volunteer, activity, at(10), at(12)),
    ])
    assert (result.outcomes[1].status, type(result.outcomes[1].error)) == (
        "rejected", OverlappingSession)


def test_a_batch_is_stored_in_one_transaction(ledger: Ledger, activity: str) -> None:
    volunteers = [make_volunteer(ledger) for _ in range(3)]
    before = ledger.head()
    records = [session_record(v, activity, at(hour), at(hour + 1))
               for v in volunteers for hour in (9, 11)]
    result = ledger.record_sessions(ADMIN, records)
    stored = ledger.recorder.select_notifications(before + 1, 100)
    # six sessions recorded and six bookings in three volunteer calendars, nothing in between
    assert ([n.id for n in stored], result.position) == (list(range(before + 1, before + 13)),
                                                         before + 12)


def test_a_batch_with_nothing_new_writes_nothing(ledger: Ledger, volunteer: str,
                                                 activity: str) -> None:
    record(ledger, volunteer, activity, source_record_id="r-1")
    before = ledger.head()
    result = ledger.record_sessions(ADMIN, [
        session_record(volunteer, activity, source_record_id="r-1"),
        session_record(volunteer, activity, at(12), at(11)),
    ])
    assert (ledger.head(), result.position) == (before, before)


def test_a_recorder_batch_rejects_only_the_records_of_other_units(ledger: Ledger,
                                                                  volunteer: str) -> None:
    ours = make_activity(ledger)
    organiser = ledger.get_activity(ours).organiser_unit_id
    result = ledger.record_sessions(recorder_of(organiser), [
        session_record(volunteer, make_activity(ledger), at(9), at(10)),
        session_record(volunteer, ours, at(11), at(12)),
    ])
    assert ([o.status for o in result.outcomes], type(result.outcomes[0].error)) == (
        ["rejected", "accepted"], Forbidden)


def test_a_committee_may_not_record_a_batch(ledger: Ledger, volunteer: str,
                                            activity: str) -> None:
    with pytest.raises(Forbidden):
        ledger.record_sessions(COMMITTEE, [session_record(volunteer, activity)])


def test_a_reused_source_record_id_is_reported_alike_in_a_batch_and_alone(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    record(ledger, volunteer, activity, source_record_id="r-1")
    other = make_volunteer(ledger)
    outside = session_record(other, activity, at(7), at(8), source_record_id="r-1")
    result = ledger.record_sessions(ADMIN, [outside, session_record(other, activity)])
    with pytest.raises(DuplicateRecordConflict):
        ledger.record_session(ADMIN, outside)
    assert type(result.outcomes[0].error) is DuplicateRecordConflict
