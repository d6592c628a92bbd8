"""Idempotency: a source record is stored once; the same record again is not counted again."""

from __future__ import annotations

from datetime import UTC

import pytest

from ledger import Ledger
from ledger.errors import DuplicateRecordConflict, InvalidField
from tests.factories import at, correct, live_minutes, make_activity, make_volunteer, record


def test_the_same_record_again_returns_the_same_session(ledger: Ledger, volunteer: str,
                                                        activity: str) -> None:
    first = record(ledger, volunteer, activity, source_record_id="sheet-7/line-3")
    again = record(ledger, volunteer, activity, source_record_id="sheet-7/line-3")
    assert (again.id, again.minutes, again.created) == (first.id, first.minutes, False)


def test_the_same_record_again_is_not_counted_twice(ledger: Ledger, volunteer: str,
                                                    activity: str) -> None:
    record(ledger, volunteer, activity, source_record_id="sheet-7/line-3")
    head = ledger.head()
    record(ledger, volunteer, activity, source_record_id="sheet-7/line-3")
    assert (ledger.head(), live_minutes(ledger, volunteer)) == (head, 60)


def test_the_same_instants_with_another_offset_are_the_same_record(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    first = record(ledger, volunteer, activity, at(9), at(10), source_record_id="r-1")
    again = record(ledger, volunteer, activity, at(9).astimezone(UTC), at(10).astimezone(UTC),
                   source_record_id="r-1")
    assert (again.id, again.created, live_minutes(ledger, volunteer)) == (first.id, False, 60)


def test_a_source_record_id_reused_with_other_times_conflicts(ledger: Ledger, volunteer: str,
                                                              activity: str) -> None:
    record(ledger, volunteer, activity, at(9), at(10), source_record_id="r-1")
    with pytest.raises(DuplicateRecordConflict) as refused:
        record(ledger, volunteer, activity, at(9), at(10, 1), source_record_id="r-1")
    assert refused.value.field == "source_record_id"


def test_a_source_record_id_reused_for_another_activity_conflicts(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    record(ledger, volunteer, activity, source_record_id="r-1")
    with pytest.raises(DuplicateRecordConflict) as refused:
        record(ledger, volunteer, make_activity(ledger), source_record_id="r-1")
    assert refused.value.field == "source_record_id"


def test_a_source_record_id_reused_for_another_volunteer_conflicts(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    record(ledger, volunteer, activity, source_record_id="r-1")
    with pytest.raises(DuplicateRecordConflict) as refused:
        record(ledger, make_volunteer(ledger), activity, source_record_id="r-1")
    assert refused.value.field == "source_record_id"


def test_a_session_needs_a_source_record_id(ledger: Ledger, volunteer: str,
                                            activity: str) -> None:
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, activity, source_record_id=" ")
    assert refused.value.field == "source_record_id"


def test_the_original_record_after_a_correction_is_still_the_same_record(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    first = record(ledger, volunteer, activity, at(9), at(10), source_record_id="r-1")
    correct(ledger, first.id, at(9), at(11))
    again = record(ledger, volunteer, activity, at(9), at(10), source_record_id="r-1")
    assert (again.id, again.created, live_minutes(ledger, volunteer)) == (first.id, False, 120)
