"""Write rules found by black-box testing: positions of repeats, dates of deregistration and
closure, concurrent registrations, repeated trainings, the unit hierarchy, no-op corrections."""

from __future__ import annotations

from datetime import UTC, date
from typing import Any

import pytest

from ledger import Ledger, Settings
from ledger.errors import (
    ClosedReference,
    DuplicateRecordConflict,
    InvalidField,
    LedgerError,
    SessionVoided,
)
from tests.factories import (
    ADMIN,
    at,
    correct,
    live_minutes,
    make_activity,
    make_long_activity,
    make_unit,
    make_volunteer,
    record,
    recorded_together,
    session_record,
    together,
    void,
)

MAY_31, JUNE_1, JULY_1 = date(2017, 5, 31), date(2017, 6, 1), date(2017, 7, 1)


def stored_event(ledger: Ledger, position: int) -> Any:
    """The notification stored at a position."""
    (notification,) = ledger.recorder.select_notifications(position, 1)
    assert notification.id == position
    return notification


# -- a repeated record answers its session as it stands: where its last event was stored ------


def test_a_repeated_record_answers_the_position_its_session_was_recorded_at(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    first = record(ledger, volunteer, activity, source_record_id="sheet-1")
    make_unit(ledger)  # the head moves on
    again = record(ledger, volunteer, activity, at(9).astimezone(UTC), at(10).astimezone(UTC),
                   source_record_id="sheet-1")
    stored = stored_event(ledger, again.position)
    assert (again.id, again.created, again.position) == (first.id, False, first.position)
    assert (stored.originator_id, stored.topic) == (first.id,
                                                    "ledger.sessions:ServiceSession.Recorded")


def test_a_repeated_record_of_a_voided_session_answers_where_it_was_voided(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    """0 minutes beside the position of the void, so a read at that position shows the 0
    (bb9 F3: the recording's position beside today's 0 minutes did not)."""
    first = record(ledger, volunteer, activity, source_record_id="sheet-1")
    voided = ledger.void_session(ADMIN, first.id, "recorded twice on paper")
    make_unit(ledger)  # the head moves on
    again = record(ledger, volunteer, activity, source_record_id="sheet-1")
    stored = stored_event(ledger, again.position)
    assert again.minutes == 0 and again.position == voided.position > first.position
    assert (stored.originator_id, stored.topic) == (first.id,
                                                    "ledger.sessions:ServiceSession.Voided")


def test_a_commit_whose_answer_was_lost_answers_201_once(
        ledger: Ledger, volunteer: str, activity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops after the COMMIT and before its answer (a failover): the store's
    retry finds the rows and fails, and the ledger tries again. The session it finds is its
    own, so the first send answers 201, as new, not 200 as a resend (the failover
    experiment: a client counting 201s undercounted). Still stored once."""
    from eventsourcing.persistence import IntegrityError

    real = ledger._save_recorded
    lost: list[int] = []

    def answer_lost(*aggregates: Any, guard: Any = None) -> Any:
        recordings = real(*aggregates, guard=guard)
        if not lost:
            lost.append(len(recordings))
            raise IntegrityError("the retried insert of a committed batch finds its own rows")
        return recordings

    monkeypatch.setattr(ledger, "_save_recorded", answer_lost)
    first = record(ledger, volunteer, activity, source_record_id="lost-answer")
    assert lost and first.created and first.minutes == 60
    stored = stored_event(ledger, first.position)
    assert (stored.originator_id, stored.topic) == (first.id,
                                                    "ledger.sessions:ServiceSession.Recorded")
    again = record(ledger, volunteer, activity, source_record_id="lost-answer")
    assert (again.id, again.created, again.position) == (first.id, False, first.position)
    assert live_minutes(ledger, volunteer) == 60  # once


def test_sessions_written_together_each_answer_the_position_of_their_own_record(
        ledger: Ledger) -> None:
    activity = make_activity(ledger)
    people = [make_volunteer(ledger) for _ in range(8)]
    records = [session_record(p, activity, source_record_id=f"g-{i}")
               for i, p in enumerate(people)]
    records.append(records[0])  # the same record twice: one is new, the other a repeat
    results, sizes = recorded_together(ledger, records)

    assert max(sizes) > 1  # some callers shared a transaction
    for written in results:
        stored = stored_event(ledger, written.position)
        assert (stored.originator_id, stored.topic.rsplit(".", 1)[1]) == (written.id, "Recorded")
    assert results[0].position == results[-1].position


# -- a deregistered volunteer: service before the date is recorded, on or after it is not --------


@pytest.fixture
def leaver(ledger: Ledger) -> str:
    """A volunteer deregistered on 1 June 2017."""
    volunteer_id = make_volunteer(ledger)
    ledger.deregister_volunteer(ADMIN, volunteer_id, JUNE_1, "moved away")
    return volunteer_id


@pytest.fixture
def all_year(ledger: Ledger) -> str:
    """An activity open through 2017 and 2018."""
    return make_long_activity(ledger, make_unit(ledger))


def test_service_before_the_deregistration_date_is_recorded_late(
        ledger: Ledger, leaver: str, all_year: str) -> None:
    written = record(ledger, leaver, all_year, at(9, day=MAY_31), at(10, day=MAY_31))
    assert (written.created, written.minutes) == (True, 60)


def test_service_on_the_deregistration_date_is_refused(ledger: Ledger, leaver: str,
                                                       all_year: str) -> None:
    head = ledger.head()
    with pytest.raises(ClosedReference) as refused:
        record(ledger, leaver, all_year, at(9, day=JUNE_1), at(10, day=JUNE_1))
    assert refused.value.field == "started_at"
    assert "2017-06-01" in refused.value.message
    assert ledger.head() == head


def test_a_correction_onto_the_deregistration_date_is_refused_as_a_new_session_would_be(
        ledger: Ledger, leaver: str, all_year: str) -> None:
    written = record(ledger, leaver, all_year, at(9, day=MAY_31), at(10, day=MAY_31))
    with pytest.raises(LedgerError) as new_session:
        record(ledger, leaver, all_year, at(9, day=JULY_1), at(10, day=JULY_1))
    with pytest.raises(LedgerError) as correction:
        correct(ledger, written.id, at(9, day=JULY_1), at(10, day=JULY_1))
    assert type(correction.value) is type(new_session.value) is ClosedReference
    assert correction.value.field == new_session.value.field
    assert ledger.get_session(written.id).service_date == "2017-05-31"


def test_a_correction_before_the_deregistration_date_is_accepted(ledger: Ledger, leaver: str,
                                                                 all_year: str) -> None:
    written = record(ledger, leaver, all_year, at(9, day=MAY_31), at(10, day=MAY_31))
    assert correct(ledger, written.id, at(9, day=MAY_31), at(11, day=MAY_31)) == 120


def test_a_batch_takes_each_record_by_its_own_service_date(ledger: Ledger, leaver: str,
                                                           all_year: str) -> None:
    result = ledger.record_sessions(ADMIN, [
        session_record(leaver, all_year, at(9, day=MAY_31), at(10, day=MAY_31)),
        session_record(leaver, all_year, at(9, day=JULY_1), at(10, day=JULY_1))])
    assert [o.status for o in result.outcomes] == ["accepted", "rejected"]
    assert type(result.outcomes[1].error) is ClosedReference


# -- a closed unit: service at its activities before the closing date only ----------------------


def test_service_on_or_after_the_organisers_closing_date_is_refused_before_it_is_not(
        ledger: Ledger, volunteer: str) -> None:
    organiser = make_unit(ledger)
    activity = make_long_activity(ledger, organiser)
    ledger.close_unit(ADMIN, organiser, JUNE_1, "merged")
    late = record(ledger, volunteer, activity, at(9, day=MAY_31), at(10, day=MAY_31))
    assert late.created
    for day in (JUNE_1, JULY_1):
        with pytest.raises(ClosedReference) as refused:
            record(ledger, volunteer, activity, at(9, day=day), at(10, day=day))
        assert refused.value.field == "started_at"
        assert organiser in refused.value.message


def test_a_correction_onto_the_organisers_closing_date_is_refused(ledger: Ledger,
                                                                 volunteer: str) -> None:
    organiser = make_unit(ledger)
    activity = make_long_activity(ledger, organiser)
    written = record(ledger, volunteer, activity, at(9, day=MAY_31), at(10, day=MAY_31))
    ledger.close_unit(ADMIN, organiser, JUNE_1, "merged")
    with pytest.raises(ClosedReference) as refused:
        correct(ledger, written.id, at(9, day=JULY_1), at(10, day=JULY_1))
    assert refused.value.field == "started_at"
    assert correct(ledger, written.id, at(8, day=MAY_31), at(10, day=MAY_31)) == 120


def test_service_after_the_station_closed_is_refused(ledger: Ledger, volunteer: str) -> None:
    station = make_unit(ledger, kind="station")
    activity = ledger.plan_activity(ADMIN, "B1", make_unit(ledger), "图书馆志愿服务",
                                    at(0, day=MAY_31), at(23, day=JULY_1), station).id
    ledger.close_unit(ADMIN, station, JUNE_1, "moved")
    record(ledger, volunteer, activity, at(9, day=MAY_31), at(10, day=MAY_31))
    with pytest.raises(ClosedReference) as refused:
        record(ledger, volunteer, activity, at(9, day=JULY_1), at(10, day=JULY_1))
    assert station in refused.value.message


# -- independent registrations at once all get a number ----------------------------------------


def test_volunteers_registered_at_once_from_several_processes_all_get_numbers(
        settings: Settings, ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    processes = [ledger, *(Ledger(settings) for _ in range(3))]  # four servers on one store
    try:
        results = together(64, lambda i: processes[i % 4].register_volunteer(
            ADMIN, f"志愿者{i}", unit_id, JUNE_1))
    finally:
        for other in processes[1:]:
            other.close()
    failures = [r for r in results if isinstance(r, Exception)]
    assert failures == []
    assert sorted(number for _written, number in results) == [
        f"MLV{n:07d}" for n in range(1, 65)]


# -- a training completion is counted once -----------------------------------------------------


def train(ledger: Ledger, volunteer_id: str, hours: float = 3.5, title: str = "骨干志愿者培训",
          day: date = JUNE_1) -> Any:
    return ledger.complete_training(ADMIN, volunteer_id, "district", "centralised", "core",
                                    title, day, hours)


def test_the_same_training_again_answers_the_original_and_writes_nothing(
        ledger: Ledger, volunteer: str) -> None:
    first = train(ledger, volunteer)
    make_unit(ledger)  # the head moves on
    head = ledger.head()
    again = train(ledger, volunteer, title=" 骨干志愿者培训 ")
    assert (first.created, again.created) == (True, False)
    assert (again.id, again.position, ledger.head()) == (first.id, first.position, head)
    assert len(ledger.get_volunteer(volunteer).trainings) == 1
    stored = stored_event(ledger, first.position)
    assert (stored.originator_id, stored.topic.rsplit(".", 1)[1]) == (volunteer,
                                                                      "TrainingCompleted")


def test_the_same_training_with_other_hours_conflicts_naming_the_record(
        ledger: Ledger, volunteer: str) -> None:
    first = train(ledger, volunteer)
    with pytest.raises(DuplicateRecordConflict) as refused:
        train(ledger, volunteer, hours=4)
    assert refused.value.field == "hours"
    assert first.id in refused.value.message
    assert len(ledger.get_volunteer(volunteer).trainings) == 1


def test_another_course_or_day_is_another_training_each_repeated_on_its_own(
        ledger: Ledger, volunteer: str) -> None:
    first = train(ledger, volunteer)
    second = train(ledger, volunteer, title="网络文明传播培训")
    third = train(ledger, volunteer, day=JULY_1)
    record(ledger, volunteer, make_activity(ledger))
    again = [train(ledger, volunteer, title="网络文明传播培训"), train(ledger, volunteer,
                                                                day=JULY_1)]
    assert len({first.id, second.id, third.id}) == 3
    assert [(w.id, w.position) for w in again] == [(second.id, second.position),
                                                   (third.id, third.position)]
    assert len(ledger.get_volunteer(volunteer).trainings) == 3


def test_training_hours_must_be_a_finite_number(ledger: Ledger, volunteer: str) -> None:
    for hours in (float("nan"), float("inf")):
        with pytest.raises(InvalidField) as refused:
            train(ledger, volunteer, hours=hours)
        assert refused.value.field == "hours"
        assert "finite" in refused.value.message


# -- stations and the unit hierarchy -----------------------------------------------------------


def test_an_activity_station_must_be_a_unit_of_kind_station(ledger: Ledger) -> None:
    not_a_station = make_unit(ledger, kind="community")
    with pytest.raises(InvalidField) as refused:
        ledger.plan_activity(ADMIN, "B1", make_unit(ledger), "x", at(8), at(18), not_a_station)
    assert refused.value.field == "station_unit_id"
    assert "station" in refused.value.message


def test_a_district_may_not_have_a_parent(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        make_unit(ledger, kind="district", parent_id=make_unit(ledger, kind="community"))
    assert refused.value.field == "parent_id"


@pytest.mark.parametrize("kind", ["town", "subdistrict"])
def test_a_town_or_subdistrict_sits_under_a_district(ledger: Ledger, kind: str) -> None:
    district = make_unit(ledger, kind="district")
    assert ledger.get_unit(make_unit(ledger, kind=kind, parent_id=district)).parent_id == district
    with pytest.raises(InvalidField) as refused:
        make_unit(ledger, kind=kind, parent_id=make_unit(ledger, kind="community"))
    assert refused.value.field == "parent_id"
    assert "district" in refused.value.message


def test_a_district_may_not_be_moved_under_another_unit(ledger: Ledger) -> None:
    district = make_unit(ledger, kind="district")
    with pytest.raises(InvalidField) as refused:
        ledger.move_unit(ADMIN, district, make_unit(ledger, kind="district"))
    assert refused.value.field == "parent_id"
    assert ledger.get_unit(district).parent_id is None


def test_a_town_may_be_moved_under_a_district_only(ledger: Ledger) -> None:
    town, district = make_unit(ledger), make_unit(ledger, kind="district")
    with pytest.raises(InvalidField) as refused:
        ledger.move_unit(ADMIN, town, make_unit(ledger, kind="organisation"))
    assert refused.value.field == "parent_id"
    ledger.move_unit(ADMIN, town, district)
    assert ledger.get_unit(town).parent_id == district


# -- a correction to the current times writes nothing ------------------------------------------


def test_a_correction_to_the_current_times_writes_nothing(ledger: Ledger, volunteer: str,
                                                          activity: str) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    corrected = ledger.correct_session(ADMIN, written.id, at(9), at(11), "wrong hour")
    make_unit(ledger)  # the head moves on
    head = ledger.head()
    again = ledger.correct_session(ADMIN, written.id, at(9).astimezone(UTC),
                                   at(11).astimezone(UTC), "wrong hour")
    assert (again.id, again.minutes, again.position) == (written.id, 120, corrected.position)
    assert (ledger.head(), ledger.get_session(written.id).version) == (head, 2)


def test_a_correction_to_the_recorded_times_answers_the_recorded_position(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    make_unit(ledger)
    again = ledger.correct_session(ADMIN, written.id, at(9), at(10), "checked again")
    assert (again.minutes, again.position) == (60, written.position)


def test_a_correction_to_the_current_times_still_obeys_the_other_rules(
        ledger: Ledger, volunteer: str, activity: str) -> None:
    written = record(ledger, volunteer, activity, at(9), at(10))
    with pytest.raises(InvalidField):
        ledger.correct_session(ADMIN, written.id, at(9), at(10), " ")
    make_unit(ledger)  # the head moves on
    head = ledger.head()
    again = ledger.correct_session(ADMIN, written.id, at(9), at(10), "ok")
    assert (again.position, ledger.head()) == (written.position, head)
    void(ledger, written.id)
    with pytest.raises(SessionVoided):
        correct(ledger, written.id, at(9), at(10))
