"""Service sessions: the rules every recorded session obeys, overlaps, the service date."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from uuid import uuid5

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import Ledger, Settings
from ledger.calendar import now
from ledger.errors import (
    ClosedReference,
    InvalidField,
    InvalidFields,
    OverlappingSession,
    UnknownReference,
)
from ledger.sessions import SESSION_NAMESPACE, session_id_for
from tests.factories import (
    ACTIVITY_ENDS,
    ACTIVITY_STARTS,
    ADMIN,
    CST,
    at,
    correct,
    live_minutes,
    make_activity,
    make_volunteer,
    record,
    void,
)


@pytest.fixture
def long_activity(ledger: Ledger) -> str:
    """An activity of three days, long enough for a session of more than 24 hours."""
    return make_activity(ledger, starts_at=at(0, day=date(2017, 3, 4)),
                         ends_at=at(23, day=date(2017, 3, 6)))


# -- recording ------------------------------------------------------------------------------


def test_a_recorded_session_counts_its_minutes(ledger: Ledger, volunteer: str,
                                               activity: str) -> None:
    written = record(ledger, volunteer, activity, at(9), at(11, 30))
    assert (written.minutes, written.created, live_minutes(ledger, volunteer)) == (150, True, 150)


def test_a_recorded_session_keeps_the_activity_it_belongs_to(ledger: Ledger, volunteer: str,
                                                             activity: str) -> None:
    session = ledger.get_session(record(ledger, volunteer, activity).id)
    assert (session.volunteer_id, session.activity_id, session.program_code) == (
        volunteer, activity, "A1")


def test_minutes_are_truncated_to_whole_minutes(ledger: Ledger, volunteer: str,
                                                activity: str) -> None:
    assert record(ledger, volunteer, activity, at(9, 0, 30), at(10, 0, 29)).minutes == 59


def test_a_session_must_end_after_it_starts(ledger: Ledger, volunteer: str,
                                            activity: str) -> None:
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, activity, at(10), at(9))
    assert refused.value.field == "ended_at"


def test_a_session_may_not_end_when_it_starts(ledger: Ledger, volunteer: str,
                                              activity: str) -> None:
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, activity, at(10), at(10))
    assert refused.value.field == "ended_at"


def test_a_session_must_last_a_whole_minute_recorded_or_corrected(ledger: Ledger,
                                                                   volunteer: str,
                                                                   activity: str) -> None:
    """59 seconds would be 0 minutes, yet a session and an active volunteer in every view."""
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, activity, at(10), at(10, 0, 59))
    assert refused.value.field == "ended_at" and "one whole minute" in refused.value.rule
    assert record(ledger, volunteer, activity, at(10), at(10, 1)).minutes == 1
    session = record(ledger, volunteer, activity, at(11), at(12))
    with pytest.raises(InvalidField):
        ledger.correct_session(ADMIN, session.id, at(11), at(11, 0, 30), "typo")
    assert ledger.get_session(session.id).minutes == 60


def test_a_session_may_last_exactly_24_hours(ledger: Ledger, volunteer: str,
                                             long_activity: str) -> None:
    start = at(8, day=date(2017, 3, 4))
    assert record(ledger, volunteer, long_activity, start, start + timedelta(hours=24)).minutes \
        == 24 * 60


def test_a_session_may_not_last_more_than_24_hours(ledger: Ledger, volunteer: str,
                                                   long_activity: str) -> None:
    start = at(8, day=date(2017, 3, 4))
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, long_activity, start, start + timedelta(hours=24, seconds=1))
    assert refused.value.field == "ended_at"


def test_a_session_that_ended_a_moment_ago_is_accepted(ledger: Ledger, volunteer: str) -> None:
    current = now()
    activity = make_activity(ledger, starts_at=current - timedelta(days=1),
                             ends_at=current + timedelta(days=1))
    written = record(ledger, volunteer, activity, current - timedelta(hours=2),
                     current - timedelta(seconds=1))
    assert written.minutes == 119


def test_a_session_may_not_lie_in_the_future(ledger: Ledger, volunteer: str) -> None:
    current = now()
    activity = make_activity(ledger, starts_at=current - timedelta(days=1),
                             ends_at=current + timedelta(days=1))
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, activity, current - timedelta(hours=1),
               current + timedelta(hours=1))
    assert refused.value.field == "ended_at"


def test_a_session_starting_in_the_future_names_its_start_beside_a_reversed_end(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    start = datetime(2099, 1, 1, 10, tzinfo=CST)
    with pytest.raises(InvalidFields) as refused:
        record(ledger, volunteer, activity, start, start - timedelta(hours=1))
    assert [(p.field, p.rule) for p in refused.value.problems] == [
        ("started_at", "lies in the future"), ("ended_at", "must be after started_at")]


def test_a_session_needs_times_with_offsets(ledger: Ledger, volunteer: str,
                                            activity: str) -> None:
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, activity, datetime(2017, 3, 5, 9), at(10))
    assert refused.value.field == "started_at"


def test_a_session_may_fill_the_activity_window_exactly(ledger: Ledger, volunteer: str,
                                                        activity: str) -> None:
    assert record(ledger, volunteer, activity, ACTIVITY_STARTS, ACTIVITY_ENDS).minutes == 600


def test_a_session_may_not_start_before_the_activity(ledger: Ledger, volunteer: str,
                                                     activity: str) -> None:
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, activity, ACTIVITY_STARTS - timedelta(minutes=1), at(9))
    assert refused.value.field == "started_at"


def test_a_session_may_not_end_after_the_activity(ledger: Ledger, volunteer: str,
                                                  activity: str) -> None:
    with pytest.raises(InvalidField) as refused:
        record(ledger, volunteer, activity, at(17), ACTIVITY_ENDS + timedelta(minutes=1))
    assert refused.value.field == "ended_at"


@pytest.fixture
def lenient(settings: Settings) -> Iterator[Ledger]:
    """A second ledger on the same store that allows 30 minutes around activity windows."""
    the_ledger = Ledger(settings.model_copy(update={"activity_margin_minutes": 30}))
    yield the_ledger
    the_ledger.close()


def test_the_margin_setting_widens_the_activity_window(lenient: Ledger, volunteer: str,
                                                       activity: str) -> None:
    written = record(lenient, volunteer, activity, ACTIVITY_STARTS - timedelta(minutes=30),
                     ACTIVITY_ENDS + timedelta(minutes=30))
    assert written.minutes == 660


def test_the_margin_setting_still_bounds_the_activity_window(lenient: Ledger, volunteer: str,
                                                             activity: str) -> None:
    with pytest.raises(InvalidField) as refused:
        record(lenient, volunteer, activity, ACTIVITY_STARTS - timedelta(minutes=31), at(9))
    assert refused.value.field == "started_at"


def test_a_session_needs_a_registered_volunteer(ledger: Ledger, activity: str) -> None:
    with pytest.raises(UnknownReference) as refused:
        record(ledger, "vol-nope", activity)
    assert refused.value.field == "volunteer_id"


def test_a_session_needs_a_known_activity(ledger: Ledger, volunteer: str) -> None:
    with pytest.raises(UnknownReference) as refused:
        record(ledger, volunteer, "act-nope")
    assert refused.value.field == "activity_id"


def test_a_session_may_not_fall_before_the_volunteer_registered(ledger: Ledger,
                                                                 long_activity: str) -> None:
    newcomer = make_volunteer(ledger, registered_on=date(2017, 3, 5))
    with pytest.raises(InvalidField) as refused:  # 23:30 on 4 March, district time
        record(ledger, newcomer, long_activity, at(23, 30, day=date(2017, 3, 4)),
               at(23, 50, day=date(2017, 3, 4)))
    assert refused.value.field == "started_at" and "2017-03-05" in refused.value.message
    # From the day of registration on, it counts; a correction cannot move it back either.
    written = record(ledger, newcomer, long_activity, at(0, 10), at(1, 10))
    with pytest.raises(InvalidField):
        correct(ledger, written.id, at(22, day=date(2017, 3, 4)), at(23, day=date(2017, 3, 4)))
    assert ledger.get_session(written.id).minutes == 60
    assert live_minutes(ledger, newcomer) == 60


def test_a_deregistered_volunteer_gets_no_new_session_from_that_date_on(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    ledger.deregister_volunteer(ADMIN, volunteer, date(2017, 3, 5), "moved away")
    with pytest.raises(ClosedReference) as refused:
        record(ledger, volunteer, activity)
    assert refused.value.field == "started_at"


def test_a_deregistered_volunteer_keeps_their_recorded_minutes(ledger: Ledger, volunteer: str,
                                                               activity: str) -> None:
    record(ledger, volunteer, activity, at(9), at(10))
    ledger.deregister_volunteer(ADMIN, volunteer, date(2017, 9, 1), "moved away")
    assert live_minutes(ledger, volunteer) == 60


def test_a_cancelled_activity_takes_no_new_session(ledger: Ledger, volunteer: str,
                                                   activity: str) -> None:
    ledger.cancel_activity(ADMIN, activity, "typhoon warning")
    with pytest.raises(ClosedReference) as refused:
        record(ledger, volunteer, activity)
    assert refused.value.field == "activity_id"


# -- overlaps -------------------------------------------------------------------------------


def test_a_session_may_not_overlap_another_of_the_same_volunteer(ledger: Ledger, volunteer: str,
                                                                 activity: str) -> None:
    record(ledger, volunteer, activity, at(9), at(11))
    with pytest.raises(OverlappingSession) as refused:
        record(ledger, volunteer, activity, at(10, 59), at(12))
    assert refused.value.field == "started_at"


def test_a_session_may_not_overlap_one_at_another_activity(ledger: Ledger, volunteer: str,
                                                           activity: str) -> None:
    record(ledger, volunteer, activity, at(9), at(11))
    with pytest.raises(OverlappingSession):
        record(ledger, volunteer, make_activity(ledger), at(8), at(18))


def test_sessions_that_only_touch_do_not_overlap(ledger: Ledger, volunteer: str,
                                                 activity: str) -> None:
    record(ledger, volunteer, activity, at(9), at(11))
    record(ledger, volunteer, activity, at(11), at(12))
    record(ledger, volunteer, activity, at(8), at(9))
    assert live_minutes(ledger, volunteer) == 240


def test_two_volunteers_may_serve_at_the_same_time(ledger: Ledger, volunteer: str,
                                                   activity: str) -> None:
    record(ledger, volunteer, activity, at(9), at(11))
    other = make_volunteer(ledger)
    record(ledger, other, activity, at(9), at(11))
    assert live_minutes(ledger, other) == 120


def test_a_voided_session_frees_its_time(ledger: Ledger, volunteer: str, activity: str) -> None:
    void(ledger, record(ledger, volunteer, activity, at(9), at(11)).id)
    record(ledger, volunteer, activity, at(9), at(11))
    assert live_minutes(ledger, volunteer) == 120


def test_a_correction_may_not_create_an_overlap(ledger: Ledger, volunteer: str,
                                                activity: str) -> None:
    first = record(ledger, volunteer, activity, at(9), at(10))
    record(ledger, volunteer, activity, at(11), at(12))
    with pytest.raises(OverlappingSession) as refused:
        correct(ledger, first.id, at(9), at(11, 30))
    assert refused.value.field == "started_at"


def test_a_correction_may_overlap_the_time_it_replaces(ledger: Ledger, volunteer: str,
                                                       activity: str) -> None:
    first = record(ledger, volunteer, activity, at(9), at(10))
    assert correct(ledger, first.id, at(9, 30), at(10, 45)) == 75


# -- service date ---------------------------------------------------------------------------


@pytest.fixture
def new_year_activity(ledger: Ledger) -> str:
    return make_activity(ledger, starts_at=datetime(2017, 12, 31, 20, tzinfo=CST),
                         ends_at=datetime(2018, 1, 1, 6, tzinfo=CST))


def test_a_session_counts_on_its_district_start_date(ledger: Ledger, volunteer: str,
                                                     new_year_activity: str) -> None:
    written = record(ledger, volunteer, new_year_activity,
                     datetime(2017, 12, 31, 23, 30, tzinfo=CST),
                     datetime(2018, 1, 1, 1, 0, tzinfo=CST))
    assert ledger.get_session(written.id).service_date == "2017-12-31"


def test_a_session_given_in_utc_counts_on_the_district_date(ledger: Ledger, volunteer: str,
                                                            new_year_activity: str) -> None:
    written = record(ledger, volunteer, new_year_activity,
                     datetime(2017, 12, 31, 16, 30, tzinfo=UTC),
                     datetime(2017, 12, 31, 18, 0, tzinfo=UTC))
    assert ledger.get_session(written.id).service_date == "2018-01-01"


@given(st.text())
def test_session_ids_are_the_uuid5_of_the_source_record_id(source_record_id: str) -> None:
    """Stored session ids were made with `uuid5`; the faster derivation must give the same
    ids, or a record imported again would be stored twice."""
    try:
        expected = f"ses-{uuid5(SESSION_NAMESPACE, source_record_id).hex}"
    except UnicodeEncodeError:  # a lone surrogate: neither derivation takes it
        with pytest.raises(UnicodeEncodeError):
            session_id_for(source_record_id)
        return
    assert session_id_for(source_record_id) == expected


def test_a_session_past_both_ends_of_its_activity_names_both(ledger: Ledger, volunteer: str,
                                                             activity: str) -> None:
    head = ledger.head()
    with pytest.raises(InvalidFields) as refused:
        record(ledger, volunteer, activity, ACTIVITY_STARTS - timedelta(hours=1),
               ACTIVITY_ENDS + timedelta(hours=1))
    assert [p.field for p in refused.value.problems] == ["started_at", "ended_at"]
    assert ledger.head() == head


def test_a_session_with_a_bad_time_and_a_blank_source_record_names_both(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    head = ledger.head()
    with pytest.raises(InvalidFields) as refused:
        record(ledger, volunteer, activity, at(9).replace(tzinfo=None), at(10),
               source_record_id="\u200b")
    assert [p.field for p in refused.value.problems] == ["started_at", "source_record_id"]
    assert ledger.head() == head
