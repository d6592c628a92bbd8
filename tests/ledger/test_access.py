"""Who may do what: roles, a recorder's unit scope, and access tokens."""

from __future__ import annotations

from datetime import date

import pytest

from ledger import Ledger, Role
from ledger.errors import ClosedReference, Forbidden, InvalidField, UnknownReference
from tests.factories import (
    ADMIN,
    AUDITOR,
    COMMITTEE,
    at,
    make_activity,
    make_unit,
    make_volunteer,
    record,
    recorder_of,
)

JUNE = date(2017, 6, 1)


@pytest.fixture
def ours(ledger: Ledger) -> str:
    """The unit of the recorder under test."""
    return make_unit(ledger)


@pytest.fixture
def theirs(ledger: Ledger) -> str:
    """Another unit."""
    return make_unit(ledger)


def train(ledger: Ledger, unit_id: str, volunteer_id: str, completed_on: date) -> None:
    ledger.complete_training(recorder_of(unit_id), volunteer_id, "community", "general",
                             "general", "社区志愿者培训", completed_on, 2)


# -- sessions: the organiser's recorder, whoever the volunteer ------------------------------


def test_a_recorder_records_sessions_at_its_units_activities_for_anyone(
        ledger: Ledger, ours: str, theirs: str) -> None:
    activity = make_activity(ledger, organiser_unit_id=ours)
    volunteer = make_volunteer(ledger, home_unit_id=theirs)
    assert record(ledger, volunteer, activity, origin=recorder_of(ours)).created


def test_a_recorder_may_not_record_at_another_units_activity(ledger: Ledger, ours: str,
                                                             theirs: str) -> None:
    activity = make_activity(ledger, organiser_unit_id=theirs)
    volunteer = make_volunteer(ledger, home_unit_id=ours)
    with pytest.raises(Forbidden):
        record(ledger, volunteer, activity, origin=recorder_of(ours))


def test_a_recorder_corrects_sessions_at_its_units_activities(ledger: Ledger, ours: str) -> None:
    session = record(ledger, make_volunteer(ledger), make_activity(ledger, organiser_unit_id=ours))
    corrected = ledger.correct_session(recorder_of(ours), session.id, at(9), at(12), "late sheet")
    assert corrected.minutes == 180


def test_a_recorder_may_not_correct_another_units_session(ledger: Ledger, ours: str,
                                                          theirs: str) -> None:
    session = record(ledger, make_volunteer(ledger, home_unit_id=ours),
                     make_activity(ledger, organiser_unit_id=theirs))
    with pytest.raises(Forbidden):
        ledger.correct_session(recorder_of(ours), session.id, at(9), at(12), "late sheet")


def test_a_recorder_voids_sessions_at_its_units_activities(ledger: Ledger, ours: str) -> None:
    session = record(ledger, make_volunteer(ledger), make_activity(ledger, organiser_unit_id=ours))
    ledger.void_session(recorder_of(ours), session.id, "entered twice")
    assert ledger.get_session(session.id).is_voided


def test_a_recorder_may_not_void_another_units_session(ledger: Ledger, ours: str,
                                                       theirs: str) -> None:
    session = record(ledger, make_volunteer(ledger, home_unit_id=ours),
                     make_activity(ledger, organiser_unit_id=theirs))
    with pytest.raises(Forbidden):
        ledger.void_session(recorder_of(ours), session.id, "entered twice")


# -- volunteers: the home unit's recorder ---------------------------------------------------


def test_a_recorder_registers_volunteers_of_its_unit(ledger: Ledger, ours: str) -> None:
    volunteer_id = make_volunteer(ledger, home_unit_id=ours, origin=recorder_of(ours))
    assert ledger.get_volunteer(volunteer_id).home_unit_id == ours


def test_a_recorder_may_not_register_volunteers_of_another_unit(ledger: Ledger, ours: str,
                                                                theirs: str) -> None:
    with pytest.raises(Forbidden):
        make_volunteer(ledger, home_unit_id=theirs, origin=recorder_of(ours))


def test_a_recorder_may_not_update_a_volunteer_of_another_unit(ledger: Ledger, ours: str,
                                                               theirs: str) -> None:
    volunteer_id = make_volunteer(ledger, home_unit_id=theirs)
    with pytest.raises(Forbidden):
        ledger.update_volunteer(recorder_of(ours), volunteer_id, {"phone": "13900000000"})


def test_a_recorder_may_not_deregister_a_volunteer_of_another_unit(ledger: Ledger, ours: str,
                                                                   theirs: str) -> None:
    volunteer_id = make_volunteer(ledger, home_unit_id=theirs)
    with pytest.raises(Forbidden):
        ledger.deregister_volunteer(recorder_of(ours), volunteer_id, JUNE, "left")


# -- transfers and trainings: the unit on the effective date --------------------------------


def test_a_recorder_transfers_a_volunteer_of_its_unit_away(ledger: Ledger, ours: str,
                                                           theirs: str) -> None:
    volunteer_id = make_volunteer(ledger, home_unit_id=ours)
    ledger.transfer_volunteer(recorder_of(ours), volunteer_id, theirs, JUNE)
    assert ledger.get_volunteer(volunteer_id).current_unit_id == theirs


def test_the_receiving_units_recorder_may_not_transfer_a_volunteer_in(
        ledger: Ledger, ours: str, theirs: str) -> None:
    volunteer_id = make_volunteer(ledger, home_unit_id=theirs)
    with pytest.raises(Forbidden):
        ledger.transfer_volunteer(recorder_of(ours), volunteer_id, ours, JUNE)


def test_a_recorder_records_trainings_from_before_the_volunteer_left(
        ledger: Ledger, ours: str, theirs: str) -> None:
    volunteer_id = make_volunteer(ledger, home_unit_id=ours)
    ledger.transfer_volunteer(ADMIN, volunteer_id, theirs, JUNE)
    train(ledger, ours, volunteer_id, date(2017, 5, 31))
    assert len(ledger.get_volunteer(volunteer_id).trainings) == 1


def test_a_recorder_may_not_record_trainings_from_after_the_volunteer_left(
        ledger: Ledger, ours: str, theirs: str) -> None:
    volunteer_id = make_volunteer(ledger, home_unit_id=ours)
    ledger.transfer_volunteer(ADMIN, volunteer_id, theirs, JUNE)
    with pytest.raises(Forbidden):
        train(ledger, ours, volunteer_id, JUNE)


# -- activities: the organiser's recorder ---------------------------------------------------


def test_a_recorder_plans_activities_its_unit_organises(ledger: Ledger, ours: str) -> None:
    activity_id = make_activity(ledger, organiser_unit_id=ours, origin=recorder_of(ours))
    assert ledger.get_activity(activity_id).organiser_unit_id == ours


def test_a_recorder_may_not_plan_another_units_activity(ledger: Ledger, ours: str,
                                                        theirs: str) -> None:
    with pytest.raises(Forbidden):
        make_activity(ledger, organiser_unit_id=theirs, origin=recorder_of(ours))


def test_a_recorder_may_not_cancel_another_units_activity(ledger: Ledger, ours: str,
                                                          theirs: str) -> None:
    activity_id = make_activity(ledger, organiser_unit_id=theirs)
    with pytest.raises(Forbidden):
        ledger.cancel_activity(recorder_of(ours), activity_id, "rain")


# -- roles ----------------------------------------------------------------------------------


def test_a_recorder_may_not_register_units(ledger: Ledger, ours: str) -> None:
    with pytest.raises(Forbidden):
        make_unit(ledger, origin=recorder_of(ours))


def test_a_committee_may_not_record_sessions(ledger: Ledger) -> None:
    with pytest.raises(Forbidden):
        record(ledger, make_volunteer(ledger), make_activity(ledger), origin=COMMITTEE)


def test_an_auditor_writes_nothing(ledger: Ledger, ours: str) -> None:
    with pytest.raises(Forbidden):
        make_volunteer(ledger, home_unit_id=ours, origin=AUDITOR)


def test_a_recorder_may_not_grant_awards(ledger: Ledger, ours: str) -> None:
    ledger.publish_award_rules(ADMIN, "best_project", 2017, {"min_sessions": 1})
    with pytest.raises(Forbidden):
        ledger.grant_award(recorder_of(ours), "best_project", 2017, "A1", "decision 1")


def test_a_committee_may_not_publish_award_rules(ledger: Ledger) -> None:
    with pytest.raises(Forbidden):
        ledger.publish_award_rules(COMMITTEE, "best_project", 2017, {"min_sessions": 1})


# -- tokens ---------------------------------------------------------------------------------


def test_an_issued_token_authenticates_as_its_role_and_unit(ledger: Ledger, ours: str) -> None:
    token, _ = ledger.issue_token(ADMIN, "recorder", unit_id=ours, label="clerk")
    actor = ledger.authenticate(token)
    assert actor is not None and (actor.role, actor.unit_id) == (Role.recorder, ours)


def test_an_unknown_token_does_not_authenticate(ledger: Ledger) -> None:
    assert ledger.authenticate("vl_not-a-token") is None


def test_a_revoked_token_no_longer_authenticates(ledger: Ledger) -> None:
    token, written = ledger.issue_token(ADMIN, "auditor")
    ledger.revoke_token(ADMIN, written.id, "left the office")
    assert ledger.authenticate(token) is None


def test_a_recorder_token_needs_a_unit(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.issue_token(ADMIN, "recorder")
    assert refused.value.field == "unit_id"


def test_only_recorder_tokens_are_bound_to_a_unit(ledger: Ledger, ours: str) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.issue_token(ADMIN, "committee", unit_id=ours)
    assert refused.value.field == "unit_id"


def test_a_token_label_of_100_kb_is_refused_and_nothing_is_issued(ledger: Ledger) -> None:
    head = ledger.head()
    with pytest.raises(InvalidField) as refused:
        ledger.issue_token(ADMIN, "auditor", label="x" * 100_000)
    assert refused.value.field == "label" and "at most 200 characters" in refused.value.message
    assert ledger.head() == head and ledger.list_tokens() == []


def test_a_token_label_hiding_a_bidi_override_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.issue_token(ADMIN, "auditor", label="clerk \u202enimda")
    assert refused.value.field == "label" and "U+202E" in refused.value.message
    ledger.issue_token(ADMIN, "auditor", label=" 阿依古丽·买买提 ")
    assert [t.label for t in ledger.list_tokens()] == ["阿依古丽·买买提"]


def test_a_recorder_token_needs_a_known_unit(ledger: Ledger) -> None:
    with pytest.raises(UnknownReference) as refused:
        ledger.issue_token(ADMIN, "recorder", unit_id="unit-nope")
    assert refused.value.field == "unit_id"


def test_a_recorder_token_may_not_be_bound_to_a_closed_unit(ledger: Ledger, ours: str) -> None:
    ledger.close_unit(ADMIN, ours, JUNE, "merged")
    with pytest.raises(ClosedReference) as refused:
        ledger.issue_token(ADMIN, "recorder", unit_id=ours)
    assert refused.value.field == "unit_id"
