"""Volunteers: registration, personal data, transfers, trainings, insurance, deregistration."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from ledger import Ledger
from ledger.errors import (
    AlreadyMember,
    ClosedReference,
    Conflict,
    Forbidden,
    InvalidField,
    InvalidFields,
    InvalidRequest,
    NotFound,
    StoreBusy,
    UnknownReference,
)
from ledger.registry import VolunteerApplication, district_today
from ledger.sealing import keys_for, opened
from tests.factories import (
    ADMIN,
    make_long_activity,
    make_unit,
    make_volunteer,
    recorder_of,
    resident_id,
    serve,
)

JUNE = date(2017, 6, 1)


def deregister(ledger: Ledger, volunteer_id: str) -> None:
    ledger.deregister_volunteer(ADMIN, volunteer_id, date(2017, 9, 1), "moved away")


def train(ledger: Ledger, volunteer_id: str, completed_on: date = JUNE) -> None:
    ledger.complete_training(ADMIN, volunteer_id, "district", "centralised", "core",
                             "骨干志愿者培训", completed_on, 3.5)


def test_a_volunteer_is_registered_with_their_home_unit(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    volunteer = ledger.get_volunteer(make_volunteer(ledger, home_unit_id=unit_id))
    assert (volunteer.home_unit_id, volunteer.current_unit_id) == (unit_id, unit_id)


def test_volunteers_get_sequential_volunteer_numbers(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    numbers = [ledger.register_volunteer(ADMIN, name, unit_id, JUNE)[1] for name in "AB"]
    assert numbers == ["MLV0000001", "MLV0000002"]


def test_a_batch_registers_each_volunteer_with_their_own_unit(ledger: Ledger) -> None:
    first, second = make_unit(ledger), make_unit(ledger)
    homes = [first, second, first, second, first]
    written, numbers = ledger.register_volunteers(
        ADMIN, [VolunteerApplication(f"志愿者{i}", home, JUNE) for i, home in enumerate(homes)])
    assert [ledger.get_volunteer(w.id).home_unit_id for w in written] == homes
    assert numbers == [f"MLV000000{i}" for i in range(1, 6)]


def test_a_batch_naming_an_unknown_unit_registers_no_one(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    head = ledger.head()
    applications = [VolunteerApplication("甲", unit_id, JUNE),
                    VolunteerApplication("乙", "no-such-unit", JUNE),
                    VolunteerApplication("丙", unit_id, JUNE)]
    with pytest.raises(UnknownReference) as refused:
        ledger.register_volunteers(ADMIN, applications)
    assert refused.value.field == "home_unit_id"
    assert "no-such-unit" in refused.value.message
    assert ledger.head() == head


def test_a_volunteer_keeps_the_personal_fields_given(ledger: Ledger) -> None:
    written, _ = ledger.register_volunteer(
        ADMIN, "雷锋", make_unit(ledger), JUNE, political_status="party_member",
        phone="13800000000", skills=["first aid", " "])
    personal = ledger.personal_of(ledger.get_volunteer(written.id))
    assert personal == {"political_status": "party_member", "phone": "13800000000",
                        "skills": ["first aid"]}


def test_a_volunteer_needs_a_name(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.register_volunteer(ADMIN, "", make_unit(ledger), JUNE)
    assert refused.value.field == "name"


def test_a_volunteer_name_or_skill_hiding_a_format_character_is_refused(ledger: Ledger) -> None:
    unit_id, head = make_unit(ledger), ledger.head()
    with pytest.raises(InvalidField) as refused:
        ledger.register_volunteer(ADMIN, "林小\u202e梅", unit_id, JUNE)
    assert refused.value.field == "name" and "U+202E" in refused.value.message
    with pytest.raises(InvalidField) as refused:
        ledger.register_volunteer(ADMIN, "林小梅", unit_id, JUNE,
                                  skills=["法律", "急救\u200d培训"])
    assert refused.value.field == "skills.1"  # the item, as the schema names one (bb29 F5)
    assert ledger.head() == head
    written, _ = ledger.register_volunteer(ADMIN, "阿依古丽·买买提", unit_id, JUNE)
    assert ledger.get_volunteer(written.id).name == "阿依古丽·买买提"


def test_an_unknown_personal_field_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.register_volunteer(ADMIN, "A", make_unit(ledger), JUNE, blood_type="O")
    assert refused.value.field == "blood_type"


def test_an_unknown_political_status_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.register_volunteer(ADMIN, "A", make_unit(ledger), JUNE, political_status="x")
    assert refused.value.field == "political_status"


def test_a_registration_may_not_be_dated_in_the_future(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        make_volunteer(ledger, registered_on=date.today() + timedelta(days=2))
    assert refused.value.field == "registered_on"


def test_a_volunteer_may_not_be_registered_in_an_unknown_unit(ledger: Ledger) -> None:
    with pytest.raises(UnknownReference) as refused:
        make_volunteer(ledger, home_unit_id="unit-nope")
    assert refused.value.field == "home_unit_id"


def test_a_volunteer_may_not_be_registered_in_a_closed_unit(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    ledger.close_unit(ADMIN, unit_id, JUNE, "merged")
    with pytest.raises(ClosedReference) as refused:
        make_volunteer(ledger, home_unit_id=unit_id)
    assert refused.value.field == "home_unit_id"


def test_an_unknown_volunteer_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        ledger.get_volunteer("vol-nope")


def test_personal_data_can_be_updated(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    ledger.update_volunteer(ADMIN, volunteer_id, {"name": "新名字", "gender": "female"})
    volunteer = ledger.get_volunteer(volunteer_id)
    assert (volunteer.name, volunteer.personal["gender"]) == ("新名字", "female")


def test_a_phone_changed_to_none_is_cleared_and_stays_cleared_when_reloaded(
        ledger: Ledger) -> None:
    written, _ = ledger.register_volunteer(ADMIN, "雷锋", make_unit(ledger), JUNE,
                                           phone="13800000000", gender="male")
    ledger.update_volunteer(ADMIN, written.id, {"name": "雷小锋"})
    assert ledger.personal_of(ledger.get_volunteer(written.id))["phone"] == "13800000000"
    ledger.update_volunteer(ADMIN, written.id, {"phone": None})
    reloaded = Ledger(ledger.settings)
    try:
        volunteer = reloaded.get_volunteer(written.id)
        personal = reloaded.personal_of(volunteer)
    finally:
        reloaded.close()
    assert (volunteer.name, personal) == ("雷小锋", {"gender": "male"})


@pytest.mark.parametrize("field", ["name", "gender", "birth_date", "political_status",
                                   "skills"])
def test_a_field_other_than_the_phone_or_id_number_cannot_be_cleared(
        ledger: Ledger, field: str) -> None:
    volunteer_id, head = make_volunteer(ledger), ledger.head()
    with pytest.raises(InvalidField) as refused:
        ledger.update_volunteer(ADMIN, volunteer_id, {field: None})
    assert refused.value.field == field
    assert ledger.head() == head


def test_an_update_that_changes_no_field_is_refused_and_writes_nothing(ledger: Ledger) -> None:
    volunteer_id, head = make_volunteer(ledger), ledger.head()
    with pytest.raises(InvalidRequest, match="no field to change"):
        ledger.update_volunteer(ADMIN, volunteer_id, {})
    assert ledger.head() == head


def test_a_volunteer_cannot_be_born_after_registering(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.register_volunteer(ADMIN, "A", make_unit(ledger), JUNE,
                                  birth_date=JUNE + timedelta(days=1))
    assert refused.value.field == "birth_date"
    volunteer_id = make_volunteer(ledger, registered_on=JUNE)
    with pytest.raises(InvalidField):
        ledger.update_volunteer(ADMIN, volunteer_id, {"birth_date": JUNE + timedelta(days=1)})
    ledger.update_volunteer(ADMIN, volunteer_id, {"birth_date": date(1990, 1, 1)})
    assert ledger.get_volunteer(volunteer_id).personal["birth_date"] == "1990-01-01"


def test_a_transfer_takes_effect_on_its_date(ledger: Ledger) -> None:
    home, other = make_unit(ledger), make_unit(ledger)
    volunteer_id = make_volunteer(ledger, home_unit_id=home)
    ledger.transfer_volunteer(ADMIN, volunteer_id, other, JUNE)
    volunteer = ledger.get_volunteer(volunteer_id)
    assert (volunteer.unit_on(JUNE - timedelta(days=1)), volunteer.unit_on(JUNE)) == (home, other)


def test_a_transfer_recorded_later_may_be_back_dated_before_an_earlier_one(ledger: Ledger) -> None:
    home, second, third = make_unit(ledger), make_unit(ledger), make_unit(ledger)
    volunteer_id = make_volunteer(ledger, home_unit_id=home)
    ledger.transfer_volunteer(ADMIN, volunteer_id, third, date(2017, 9, 1))
    ledger.transfer_volunteer(ADMIN, volunteer_id, second, JUNE)
    volunteer = ledger.get_volunteer(volunteer_id)
    assert [volunteer.unit_on(d) for d in (date(2017, 5, 1), JUNE, date(2017, 9, 1))] == [
        home, second, third]


def test_a_volunteer_may_not_be_transferred_to_an_unknown_unit(ledger: Ledger) -> None:
    with pytest.raises(UnknownReference) as refused:
        ledger.transfer_volunteer(ADMIN, make_volunteer(ledger), "unit-nope", JUNE)
    assert refused.value.field == "to_unit_id"


def test_a_volunteer_may_not_be_transferred_to_a_closed_unit(ledger: Ledger) -> None:
    closed = make_unit(ledger)
    ledger.close_unit(ADMIN, closed, JUNE, "merged")
    with pytest.raises(ClosedReference) as refused:
        ledger.transfer_volunteer(ADMIN, make_volunteer(ledger), closed, JUNE)
    assert refused.value.field == "to_unit_id"


def test_a_volunteer_may_not_be_transferred_to_the_unit_they_belong_to(ledger: Ledger) -> None:
    # A conflict with the volunteer's memberships, a fact of the ledger (409), not a bad field.
    home = make_unit(ledger)
    with pytest.raises(AlreadyMember) as refused:
        ledger.transfer_volunteer(ADMIN, make_volunteer(ledger, home_unit_id=home), home, JUNE)
    assert refused.value.field == "to_unit_id"


def test_a_transfer_may_not_take_effect_before_registration(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger, registered_on=JUNE)
    with pytest.raises(InvalidField) as refused:
        ledger.transfer_volunteer(ADMIN, volunteer_id, make_unit(ledger), date(2017, 5, 31))
    assert refused.value.field == "effective_on"


def test_a_transfer_may_not_take_effect_in_the_future(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger, registered_on=JUNE)
    home = ledger.get_volunteer(volunteer_id).current_unit_id
    tomorrow = district_today() + timedelta(days=1)
    with pytest.raises(InvalidField) as refused:
        ledger.transfer_volunteer(ADMIN, volunteer_id, make_unit(ledger), tomorrow)
    assert refused.value.field == "effective_on"
    assert ledger.get_volunteer(volunteer_id).current_unit_id == home


def test_a_deregistered_volunteer_cannot_be_transferred(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    deregister(ledger, volunteer_id)
    with pytest.raises(ClosedReference) as refused:
        ledger.transfer_volunteer(ADMIN, volunteer_id, make_unit(ledger), JUNE)
    assert refused.value.field == "volunteer_id"


def test_a_deregistered_volunteer_stays_on_record_with_the_date(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    deregister(ledger, volunteer_id)
    assert ledger.get_volunteer(volunteer_id).deregistered_on == "2017-09-01"


def test_deregistration_needs_a_reason(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.deregister_volunteer(ADMIN, make_volunteer(ledger), JUNE, "")
    assert refused.value.field == "reason"


def test_a_volunteer_cannot_be_deregistered_twice(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    deregister(ledger, volunteer_id)
    with pytest.raises(ClosedReference):
        deregister(ledger, volunteer_id)


def test_a_completed_training_is_kept_in_whole_minutes(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    train(ledger, volunteer_id)
    (training,) = ledger.get_volunteer(volunteer_id).trainings
    assert (training["level"], training["minutes"], training["completed_on"]) == (
        "district", 210, "2017-06-01")


def test_a_training_of_an_unknown_level_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.complete_training(ADMIN, make_volunteer(ledger), "galaxy", "online", "core",
                                 "T", JUNE, 1)
    assert refused.value.field == "level"


def test_a_training_may_not_be_completed_before_registration(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger, registered_on=JUNE)
    with pytest.raises(InvalidField) as refused:
        train(ledger, volunteer_id, completed_on=date(2017, 5, 1))
    assert refused.value.field == "completed_on"


def test_a_training_may_not_be_completed_in_the_future(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        train(ledger, make_volunteer(ledger), completed_on=date.today() + timedelta(days=2))
    assert refused.value.field == "completed_on"


def test_a_training_needs_a_known_volunteer(ledger: Ledger) -> None:
    with pytest.raises(UnknownReference) as refused:
        train(ledger, "vol-nope")
    assert refused.value.field == "volunteer_id"


def test_a_deregistered_volunteer_completes_no_training_from_that_date_on(
        ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    deregister(ledger, volunteer_id)  # on 2017-09-01
    with pytest.raises(ClosedReference) as refused:
        train(ledger, volunteer_id, date(2017, 9, 1))
    assert refused.value.field == "completed_on"
    train(ledger, volunteer_id)  # in June, before it: a late record of a true completion
    assert len(ledger.get_volunteer(volunteer_id).trainings) == 1


def test_a_registration_ends_after_the_service_and_training_on_record(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    train(ledger, volunteer_id)  # in June
    with pytest.raises(Conflict) as refused:
        ledger.deregister_volunteer(ADMIN, volunteer_id, JUNE, "moved away")
    assert refused.value.field == "deregistered_on" and "training" in refused.value.message
    activity = make_long_activity(ledger, make_unit(ledger))
    session = serve(ledger, volunteer_id, activity, date(2017, 8, 20))
    with pytest.raises(Conflict) as refused:
        ledger.deregister_volunteer(ADMIN, volunteer_id, date(2017, 8, 20), "moved away")
    assert "session" in refused.value.message
    ledger.void_session(ADMIN, session.id, "recorded in error")  # a voided session is no service
    ledger.deregister_volunteer(ADMIN, volunteer_id, date(2017, 8, 20), "moved away")
    assert ledger.get_volunteer(volunteer_id).deregistered_on == "2017-08-20"


def test_a_volunteer_is_insured_once_per_year(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    ledger.insure_volunteer(ADMIN, volunteer_id, 2017, "P-1", "人保财险")
    assert ledger.get_volunteer(volunteer_id).insured_years == [2017]


def test_insuring_a_volunteer_twice_for_one_year_is_refused(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    ledger.insure_volunteer(ADMIN, volunteer_id, 2017, "P-1", "人保财险")
    with pytest.raises(InvalidField) as refused:
        ledger.insure_volunteer(ADMIN, volunteer_id, 2017, "P-2", "人保财险")
    assert refused.value.field == "year"


def test_a_cover_may_be_bought_for_next_year_but_not_further_ahead(ledger: Ledger) -> None:
    volunteer_id = make_volunteer(ledger)
    next_year = district_today().year + 1
    ledger.insure_volunteer(ADMIN, volunteer_id, next_year, "P-1", "人保财险")
    head = ledger.head()
    for year in (next_year + 1, 2099):
        with pytest.raises(InvalidField) as refused:
            ledger.insure_volunteer(ADMIN, volunteer_id, year, "P-2", "人保财险")
        assert refused.value.field == "year" and "ahead" in refused.value.message
    with pytest.raises(InvalidField) as refused:
        ledger.insure_volunteer(ADMIN, volunteer_id, 1999, "P-3", "人保财险")
    assert refused.value.field == "year"
    assert ledger.head() == head
    assert ledger.get_volunteer(volunteer_id).insured_years == [next_year]


def test_an_update_to_what_the_record_already_says_writes_nothing(ledger: Ledger) -> None:
    written, _ = ledger.register_volunteer(ADMIN, "雷锋", make_unit(ledger), JUNE,
                                           phone="13800000000")
    head = ledger.head()
    same = ledger.update_volunteer(ADMIN, written.id, {"name": "雷锋", "phone": "13800000000",
                                                       "id_number": None})
    assert (same.position, ledger.head()) == (written.position, head)
    ledger.update_volunteer(ADMIN, written.id, {"name": "雷锋", "phone": "13900000000"})
    history = ledger.recorder.select_events(written.id)
    assert len(history) == 2  # registered, then the phone alone
    changes = ledger.mapper.to_domain_event(history[-1]).changes
    assert list(changes) == ["phone"]
    assert opened(changes, keys_for(ledger.recorder, [changes])) == {"phone": "13900000000"}


def test_registrations_that_keep_losing_the_race_for_a_number_are_busy_not_a_conflict(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    # bb30 F1: 1-2 of 240 concurrent registrations answered 409 concurrent-change, which
    # clients do not retry; the race is for the ledger's own number sequence, not for a
    # record the client named: 503, try again.
    unit = make_unit(ledger)

    def lost(*aggregates: Any, **kwargs: Any) -> int:
        raise IntegrityError("another registration took the number")

    monkeypatch.setattr("ledger.registry.NUMBER_ATTEMPTS", 2)
    monkeypatch.setattr("ledger.registry.NUMBER_PAUSE_SECONDS", 0.0)
    monkeypatch.setattr(ledger, "_save", lost)
    with pytest.raises(StoreBusy, match="volunteer numbers"):
        ledger.register_volunteer(ADMIN, "张三", unit, JUNE)


def _resident_id(born: str, sequence: str = "123") -> str:
    """An 18-digit resident id number of Meilie district born on `born` (YYYYMMDD)."""
    body = f"350402{born}{sequence}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def test_the_date_of_birth_in_an_id_number_is_checked_against_the_record(
        ledger: Ledger) -> None:
    # bb32 F1, F2: an id number born in 2099, or on another day than birth_date, was taken.
    unit = make_unit(ledger)
    for personal, field in (({"id_number": _resident_id("20991231")}, "id_number"),
                            ({"id_number": _resident_id("20170602")}, "id_number"),
                            ({"id_number": _resident_id("19850615"),
                              "birth_date": date(1991, 1, 1)}, "id_number")):
        with pytest.raises(InvalidField) as refused:
            ledger.register_volunteer(ADMIN, "林小梅", unit, JUNE, **personal)
        assert refused.value.field == field, personal
    written, _ = ledger.register_volunteer(ADMIN, "林小梅", unit, JUNE,
                                           id_number=_resident_id("19850615"),
                                           birth_date=date(1985, 6, 15))
    with pytest.raises(InvalidField) as refused:  # a correction that disagrees, named
        ledger.update_volunteer(ADMIN, written.id, {"birth_date": date(1986, 6, 15)})
    assert refused.value.field == "birth_date"
    ledger.update_volunteer(ADMIN, written.id, {"name": "林晓梅"})  # other fields: as before
    ledger.update_volunteer(ADMIN, written.id, {"id_number": _resident_id("19860615"),
                                                "birth_date": date(1986, 6, 15)})


def test_an_update_names_every_field_it_refuses_at_once(ledger: Ledger) -> None:
    volunteer_id, head = make_volunteer(ledger), ledger.head()
    with pytest.raises(InvalidFields) as refused:
        ledger.update_volunteer(ADMIN, volunteer_id, {
            "skills": ["急救", "", "翻\u202e译", "x\u202ey"], "colour": "red",
            "gender": None, "name": "林\u202e小梅", "birth_date": date(2017, 2, 1)})
    # In the body's order (name first, as registration has it); the birth date is compared
    # with the record's registration day once the volunteer is found.
    assert [p.field for p in refused.value.problems] == [
        "name", "birth_date", "gender", "skills.2", "skills.3", "colour"]
    assert ledger.head() == head


def test_an_update_refused_on_its_own_is_refused_before_its_volunteer_is_looked_up(
        ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.update_volunteer(ADMIN, "vol-nobody", {"name": "林\u202e小梅"})
    assert refused.value.field == "name"


def test_a_recorder_of_another_unit_learns_nothing_of_the_record_from_an_update(
        ledger: Ledger) -> None:
    """The date of birth on record is named only to those who may read the record."""
    home, other = make_unit(ledger), make_unit(ledger)
    written, _ = ledger.register_volunteer(ADMIN, "林小梅", home, JUNE,
                                           id_number=resident_id("19850615"))
    with pytest.raises(Forbidden):
        ledger.update_volunteer(recorder_of(other), written.id, {"birth_date": date(1986, 1, 1)})
    with pytest.raises(InvalidField) as refused:
        ledger.update_volunteer(recorder_of(home), written.id, {"birth_date": date(1986, 1, 1)})
    assert refused.value.field == "birth_date"


def test_a_deregistration_names_its_reason_and_its_day_before_registration_at_once(
        ledger: Ledger) -> None:
    volunteer_id, head = make_volunteer(ledger, registered_on=JUNE), ledger.head()
    with pytest.raises(InvalidFields) as refused:
        ledger.get_volunteer(volunteer_id).deregister(date(2017, 1, 1), "\u200b", {})
    assert [p.field for p in refused.value.problems] == ["deregistered_on", "reason"]
    assert ledger.head() == head
