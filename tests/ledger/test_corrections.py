"""Corrections and voids: a wrong record is corrected or voided with a reason, never erased."""

from __future__ import annotations

from datetime import date

import pytest

from ledger import Ledger
from ledger.errors import (
    ConcurrentChange,
    InvalidField,
    NotFound,
    SessionVoided,
    VersionMismatch,
)
from tests.factories import (
    ADMIN,
    at,
    correct,
    lands_before_next_save,
    live_minutes,
    make_activity,
    record,
    void,
)


@pytest.fixture
def long_activity(ledger: Ledger) -> str:
    """An activity of three days, long enough for a session of more than 24 hours."""
    return make_activity(ledger, starts_at=at(0, day=date(2017, 3, 4)),
                         ends_at=at(23, day=date(2017, 3, 6)))


def test_a_correction_replaces_the_served_time(ledger: Ledger, volunteer: str,
                                               activity: str) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    correct(ledger, written.id, at(9), at(12))
    session = ledger.get_session(written.id)
    assert (session.started_at, session.ended_at, live_minutes(ledger, volunteer)) == (
        at(9), at(12), 180)


def test_a_correction_moves_the_service_date(ledger: Ledger, volunteer: str,
                                             long_activity: str) -> None:
    written = record(ledger, volunteer, long_activity, at(9, day=date(2017, 3, 4)),
                     at(10, day=date(2017, 3, 4)))
    correct(ledger, written.id, at(9, day=date(2017, 3, 6)), at(10, day=date(2017, 3, 6)))
    assert ledger.get_session(written.id).service_date == "2017-03-06"


def test_a_correction_needs_a_reason(ledger: Ledger, volunteer: str, activity: str) -> None:
    written = record(ledger, volunteer, activity)
    with pytest.raises(InvalidField) as refused:
        correct(ledger, written.id, at(9), at(11), reason="  ")
    assert refused.value.field == "reason"


def test_a_correction_obeys_the_session_rules(ledger: Ledger, volunteer: str,
                                              activity: str) -> None:
    written = record(ledger, volunteer, activity)
    with pytest.raises(InvalidField) as refused:
        correct(ledger, written.id, at(9), at(8))
    assert refused.value.field == "ended_at"


def test_a_correction_stays_inside_the_activity_window(ledger: Ledger, volunteer: str,
                                                       activity: str) -> None:
    written = record(ledger, volunteer, activity)
    with pytest.raises(InvalidField) as refused:
        correct(ledger, written.id, at(7), at(9))
    assert refused.value.field == "started_at"


def test_a_voided_session_cannot_be_corrected(ledger: Ledger, volunteer: str,
                                              activity: str) -> None:
    written = record(ledger, volunteer, activity)
    void(ledger, written.id)
    with pytest.raises(SessionVoided):
        correct(ledger, written.id, at(9), at(11))


def test_an_unknown_session_cannot_be_corrected(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        correct(ledger, "ses-nope", at(9), at(11))


def test_a_voided_session_no_longer_counts(ledger: Ledger, volunteer: str,
                                           activity: str) -> None:
    record(ledger, volunteer, activity, at(9), at(10))
    void(ledger, record(ledger, volunteer, activity, at(11), at(12)).id)
    assert live_minutes(ledger, volunteer) == 60


def test_a_voided_session_stays_on_record_with_its_reason(ledger: Ledger, volunteer: str,
                                                          activity: str) -> None:
    written = record(ledger, volunteer, activity)
    void(ledger, written.id, reason="duplicate paper sheet")
    assert ledger.get_session(written.id).voided_reason == "duplicate paper sheet"


def test_a_void_needs_a_reason(ledger: Ledger, volunteer: str, activity: str) -> None:
    written = record(ledger, volunteer, activity)
    with pytest.raises(InvalidField) as refused:
        void(ledger, written.id, reason="")
    assert refused.value.field == "reason"


def test_a_voided_session_cannot_be_voided_again(ledger: Ledger, volunteer: str,
                                                 activity: str) -> None:
    written = record(ledger, volunteer, activity)
    void(ledger, written.id)
    with pytest.raises(SessionVoided):
        void(ledger, written.id)


def test_a_correction_that_another_change_of_the_session_beat_is_refused(
        ledger: Ledger, volunteer: str, activity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    ran = lands_before_next_save(ledger, monkeypatch,
                                 lambda: correct(ledger, written.id, at(9), at(11)))
    with pytest.raises(ConcurrentChange, match="changed by another request"):
        correct(ledger, written.id, at(9), at(12))
    assert ran
    session = ledger.get_session(written.id)
    assert (session.ended_at, session.version, live_minutes(ledger, volunteer)) == (at(11), 2, 120)


def test_a_void_that_a_correction_beat_is_refused(
        ledger: Ledger, volunteer: str, activity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    lands_before_next_save(ledger, monkeypatch, lambda: correct(ledger, written.id, at(9), at(11)))
    with pytest.raises(ConcurrentChange):
        void(ledger, written.id)
    assert not ledger.get_session(written.id).is_voided
    assert live_minutes(ledger, volunteer) == 120


def test_the_same_correction_twice_at_once_is_written_once(
        ledger: Ledger, volunteer: str, activity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    lands_before_next_save(ledger, monkeypatch, lambda: correct(ledger, written.id, at(9), at(12)))
    assert correct(ledger, written.id, at(9), at(12)) == 180  # the one that lost finds it done
    assert ledger.get_session(written.id).version == 2


def test_a_correction_that_only_another_session_of_the_volunteer_beat_goes_through(
        ledger: Ledger, volunteer: str, activity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    ran = lands_before_next_save(ledger, monkeypatch,
                 lambda: record(ledger, volunteer, activity, at(14), at(15), "other-sheet"))
    assert correct(ledger, written.id, at(9), at(12)) == 180
    assert ran
    assert live_minutes(ledger, volunteer) == 180 + 60


def test_a_change_naming_another_version_is_refused_and_writes_nothing(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    with pytest.raises(VersionMismatch, match="at version 1, not 2") as refused:
        ledger.correct_session(ADMIN, written.id, at(9), at(11), "typo", expected_version=2)
    assert refused.value.field == "If-Match"
    with pytest.raises(VersionMismatch):
        ledger.void_session(ADMIN, written.id, "twice", expected_version=0)
    assert ledger.get_session(written.id).version == 1
    ledger.correct_session(ADMIN, written.id, at(9), at(11), "typo", expected_version=1)
    ledger.void_session(ADMIN, written.id, "twice", expected_version=2)
    assert ledger.get_session(written.id).is_voided
