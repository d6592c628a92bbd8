"""Idempotency: a source record is stored once; the same record again is not counted again."""

from __future__ import annotations

from datetime import UTC, date
from typing import Any

import pytest

from ledger import Ledger, Written
from ledger.base import Recognised
from ledger.errors import DuplicateRecordConflict, InvalidField, KeyReused
from tests.factories import (
    ADMIN,
    at,
    correct,
    live_minutes,
    make_activity,
    make_unit,
    make_volunteer,
    record,
    sent_again_meanwhile,
)


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


# -- registrations sent with an idempotency key --------------------------------------------------


def test_a_keyed_registration_sent_again_is_recognised_not_registered_twice(
        ledger: Ledger) -> None:
    first = ledger.keyed("clerk\x00k-1", lambda: ledger.register_unit(ADMIN, "列东街道", "town"))
    assert isinstance(first, Written)
    head = ledger.head()
    again = ledger.keyed("clerk\x00k-1", lambda: ledger.register_unit(ADMIN, " 列东街道 ", "town"))
    assert isinstance(again, Recognised)
    assert (again.id, again.position, ledger.head()) == (first.id, first.position, head)


def test_a_key_sent_again_with_another_request_is_refused_and_writes_nothing(
        ledger: Ledger) -> None:
    ledger.keyed("clerk\x00k-1", lambda: ledger.register_unit(ADMIN, "列东街道", "town"))
    head = ledger.head()
    with pytest.raises(KeyReused) as refused:
        ledger.keyed("clerk\x00k-1", lambda: ledger.register_unit(ADMIN, "列西街道", "town"))
    assert refused.value.field == "Idempotency-Key"
    assert ledger.head() == head
    other = ledger.keyed("other\x00k-1", lambda: ledger.register_unit(ADMIN, "列西街道", "town"))
    assert isinstance(other, Written)  # a key belongs to its caller (scope)


def test_a_keyed_volunteer_is_recognised_by_what_was_first_asked_for(ledger: Ledger) -> None:
    unit = make_unit(ledger)

    def register() -> Any:
        return ledger.register_volunteer(ADMIN, "林小梅", unit, date(2017, 1, 10),
                                         phone="13805981234")

    first, number = ledger.keyed("clerk\x00v-1", register)
    ledger.update_volunteer(ADMIN, first.id, {"phone": "13900000000"})
    again = ledger.keyed("clerk\x00v-1", register)  # the number it was issued is not asked for
    assert isinstance(again, Recognised) and again.id == first.id
    assert ledger.get_volunteer(first.id).volunteer_number == number


def test_two_sends_of_one_keyed_request_at_once_register_once(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    def register() -> Any:
        return ledger.register_unit(ADMIN, "列东街道", "town")

    # The other send lands after this one looked for it and before it is stored: this one's
    # insert fails on the id, and it looks again.
    raced = sent_again_meanwhile(ledger, monkeypatch,
                                 lambda: ledger.keyed("clerk\x00k-1", register))
    second = ledger.keyed("clerk\x00k-1", register)
    assert isinstance(raced[0], Written) and isinstance(second, Recognised)
    assert second.id == raced[0].id
    assert len(ledger.recorder.select_events(second.id)) == 1


def test_a_resend_refused_because_its_parent_closed_meanwhile_is_still_recognised(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sends of one keyed request at once: the first is stored, then the parent closes,
    then the second is checked: refused as the ledger stands, but the request is done."""
    parent = make_unit(ledger, "town")

    def register() -> Any:
        return ledger.register_unit(ADMIN, "沙洲社区", "community", parent_id=parent)

    def fields() -> dict[str, Any]:
        return ledger.unit_fields("沙洲社区", "community", parent)

    look, looked = ledger._registered_under, []

    def first_send_lands(*args: Any) -> Any:
        if not looked:  # the other send is stored, and the parent closed, just after this look
            looked.append(look(*args))
            looked.append(ledger.keyed("clerk\x00k-1", register, "unit", fields))
            ledger.close_unit(ADMIN, parent, date(2017, 3, 1), "merged")
            return looked[0]
        return look(*args)

    monkeypatch.setattr(ledger, "_registered_under", first_send_lands)
    again = ledger.keyed("clerk\x00k-1", register, "unit", fields)
    assert looked[0] is None and isinstance(looked[1], Written)
    assert isinstance(again, Recognised) and again.id == looked[1].id
