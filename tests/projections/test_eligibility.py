"""Award eligibility: every candidate, each criterion with required, actual and passed."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import PROGRAMS, Ledger, NotFound
from projections import ReadModels
from projections.eligibility import _hours_check
from tests.factories import (
    ADMIN,
    COMMITTEE,
    make_long_activity,
    make_unit,
    make_volunteer,
    serve,
    train,
)

BEAUTIFUL = "most_beautiful_volunteer"


def criteria_of(item: dict[str, Any]) -> dict[str, tuple[Any, Any, bool]]:
    return {c["name"]: (c["required"], c["actual"], c["passed"]) for c in item["criteria"]}


def test_there_is_no_eligibility_without_published_rules(models: ReadModels) -> None:
    models.catch_up()
    assert models.eligibility(BEAUTIFUL, 2017) is None


def test_a_failing_candidate_is_told_which_criteria_failed(ledger: Ledger,
                                                           models: ReadModels) -> None:
    volunteer = make_volunteer(ledger, registered_on=date(2017, 10, 1))
    activity = make_long_activity(ledger, make_unit(ledger))
    serve(ledger, volunteer, activity, date(2017, 11, 1), hours=12)
    serve(ledger, volunteer, activity, date(2018, 1, 2), hours=20)
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {
        "min_hours_in_year": 10, "min_star_level": 1, "training_required": True,
        "min_registered_days": 180})
    models.catch_up()

    answer = models.eligibility(BEAUTIFUL, 2017, volunteer)

    assert answer is not None and answer["rules_version"] == 1
    [item] = answer["items"]
    assert item["candidate_id"] == volunteer and item["eligible"] is False
    assert criteria_of(item) == {
        "min_hours_in_year": (10, 12.0, True),
        "min_star_level": (1, 0, False),
        "training_required": (True, False, False),
        "min_registered_days": (180, 92, False),  # 1 October to 31 December
    }


def test_star_level_and_training_are_taken_as_of_the_year_end(ledger: Ledger,
                                                              models: ReadModels) -> None:
    volunteer = make_volunteer(ledger, registered_on=date(2016, 6, 1))
    activity = make_long_activity(ledger, make_unit(ledger))
    for day in range(1, 6):
        serve(ledger, volunteer, activity, date(2017, 12, day), hours=20, start_hour=1)
    train(ledger, volunteer, date(2017, 12, 31))
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017,
                               {"min_star_level": 1, "training_required": True})
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2016,
                               {"min_star_level": 1, "training_required": True})
    models.catch_up()

    this_year = models.eligibility(BEAUTIFUL, 2017, volunteer)
    year_before = models.eligibility(BEAUTIFUL, 2016, volunteer)

    assert this_year is not None and this_year["items"][0]["eligible"] is True
    assert year_before is not None
    assert criteria_of(year_before["items"][0]) == {
        "min_star_level": (1, 0, False), "training_required": (True, False, False)}


def test_a_recent_award_or_a_voided_session_rules_a_volunteer_out(
        ledger: Ledger, models: ReadModels) -> None:
    awarded, voided, clean = (make_volunteer(ledger) for _ in range(3))
    activity = make_long_activity(ledger, make_unit(ledger))
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {"min_hours_in_year": 0})
    ledger.grant_award(COMMITTEE, BEAUTIFUL, 2017, awarded, "decision 2017-1")
    ledger.void_session(ADMIN, serve(ledger, voided, activity, date(2018, 3, 3)).id, "duplicate")
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2018, {
        "not_awarded_in_previous_years": 2, "no_voided_sessions": True})
    models.catch_up()

    answer = models.eligibility(BEAUTIFUL, 2018)

    assert answer is not None
    items = {item["candidate_id"]: item for item in answer["items"]}
    assert criteria_of(items[awarded])["not_awarded_in_previous_years"] == (2, 0, False)
    assert criteria_of(items[voided])["no_voided_sessions"] == (True, False, False)
    assert items[clean]["eligible"] is True
    assert criteria_of(items[clean])["not_awarded_in_previous_years"] == (2, 2, True)


def test_republished_rules_are_evaluated_and_named(ledger: Ledger, models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    serve(ledger, volunteer, make_long_activity(ledger, make_unit(ledger)), date(2017, 4, 4), 3)
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {"min_hours_in_year": 5})
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {"min_hours_in_year": 2})
    models.catch_up()

    answer = models.eligibility(BEAUTIFUL, 2017, volunteer)

    assert answer is not None and answer["rules_version"] == 2
    assert answer["items"][0]["eligible"] is True


def test_units_are_judged_on_their_own_basis(ledger: Ledger, models: ReadModels) -> None:
    community, organisation = make_unit(ledger, "community"), make_unit(ledger, "organisation")
    people = [make_volunteer(ledger, community) for _ in range(2)]
    activity = make_long_activity(ledger, organisation, "B3")
    serve(ledger, people[0], activity, date(2017, 5, 1), hours=3)
    serve(ledger, people[1], activity, date(2017, 5, 2), hours=1)
    rules = {"min_hours_in_year": 4, "min_active_volunteers": 2, "min_hours_per_volunteer": 2.5}
    for award in ("best_community", "best_organisation"):
        ledger.publish_award_rules(ADMIN, award, 2017, rules)
    models.catch_up()

    for award, unit in (("best_community", community), ("best_organisation", organisation)):
        answer = models.eligibility(award, 2017, unit)
        assert answer is not None
        assert criteria_of(answer["items"][0]) == {
            "min_hours_in_year": (4, 4.0, True), "min_active_volunteers": (2, 2, True),
            "min_hours_per_volunteer": (2.5, 2.0, False)}


def test_every_program_is_a_candidate_for_best_project(ledger: Ledger,
                                                       models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    serve(ledger, volunteer, make_long_activity(ledger, make_unit(ledger), "C3"),
          date(2017, 6, 6), hours=2)
    ledger.publish_award_rules(ADMIN, "best_project", 2017,
                               {"min_sessions": 1, "min_volunteers": 1, "min_hours_in_year": 2})
    models.catch_up()

    answer = models.eligibility("best_project", 2017)

    assert answer is not None
    assert [i["candidate_id"] for i in answer["items"]] == sorted(PROGRAMS)
    assert [i["candidate_id"] for i in answer["items"] if i["eligible"]] == ["C3"]


def test_asking_about_someone_who_is_no_candidate_is_not_found(ledger: Ledger,
                                                               models: ReadModels) -> None:
    unit = make_unit(ledger, "town")
    ledger.publish_award_rules(ADMIN, "best_community", 2017, {"min_hours_in_year": 1})
    models.catch_up()

    with pytest.raises(NotFound):
        models.eligibility("best_community", 2017, unit)


def test_candidates_are_the_volunteers_of_that_year(ledger: Ledger, models: ReadModels) -> None:
    unit = make_unit(ledger)
    in_2016 = make_volunteer(ledger, unit, registered_on=date(2016, 3, 1))
    left_in_2016 = make_volunteer(ledger, unit, registered_on=date(2016, 3, 1))
    ledger.deregister_volunteer(ADMIN, left_in_2016, date(2016, 12, 31), "moved away")
    joined_2018 = make_volunteer(ledger, unit, registered_on=date(2018, 1, 1))
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {"min_registered_days": 0})
    models.catch_up()

    answer = models.eligibility(BEAUTIFUL, 2017)

    assert answer is not None
    ids = {item["candidate_id"] for item in answer["items"]}
    assert in_2016 in ids and left_in_2016 not in ids and joined_2018 not in ids
    with pytest.raises(NotFound):
        models.eligibility(BEAUTIFUL, 2017, joined_2018)


def test_hours_short_of_a_requirement_never_read_as_reaching_it(ledger: Ledger,
                                                                models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger))
    serve(ledger, volunteer, activity, date(2017, 5, 1), hours=139 / 60)  # 2.3166… hours
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {"min_hours_in_year": 2.32})
    models.catch_up()

    answer = models.eligibility(BEAUTIFUL, 2017, volunteer)

    assert answer is not None
    assert criteria_of(answer["items"][0])["min_hours_in_year"] == (2.32, 2.31, False)


@pytest.mark.parametrize(("minutes", "required", "shown", "passed"), [
    (249, 4.15, 4.15, True),  # 4.15 * 60 is 249.00000000000003 in binary: 249 minutes reach it
    (248, 4.15, 4.13, False),
    (370, 6.165, 6.166, True),  # a requirement finer than hundredths is shown on its own grid
    (369, 6.15, 6.15, True),
    (100, 1.67, 1.66, False),
])
def test_hours_are_compared_exactly_and_shown_reaching_the_requirement_when_they_do(
        ledger: Ledger, models: ReadModels, minutes: int, required: float, shown: float,
        passed: bool) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger))
    serve(ledger, volunteer, activity, date(2017, 5, 1), hours=minutes / 60)
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {"min_hours_in_year": required})
    models.catch_up()

    answer = models.eligibility(BEAUTIFUL, 2017, volunteer)

    assert answer is not None
    assert criteria_of(answer["items"][0])["min_hours_in_year"] == (required, shown, passed)
    assert (shown >= required) is passed


def test_registered_days_count_every_day_registered_through_31_december(
        ledger: Ledger, models: ReadModels) -> None:
    """Registered days run from registration through 31 December. A deregistration takes
    effect on its day: on 1 January 2018 it leaves all 365 days; on or before 31 December it
    leaves no candidate (bb11, bb16: as of 31 December they are no volunteer of 2017)."""
    unit = make_unit(ledger)
    stayed, left_feb_24, left_dec_31, left_jan_1_next, left_jan_1 = (
        make_volunteer(ledger, unit, registered_on=date(2017, 1, 1)) for _ in range(5))
    late = make_volunteer(ledger, unit, registered_on=date(2017, 12, 31))
    earlier = make_volunteer(ledger, unit, registered_on=date(2016, 3, 1))
    ledger.deregister_volunteer(ADMIN, left_feb_24, date(2017, 2, 24), "moved away")
    ledger.deregister_volunteer(ADMIN, left_dec_31, date(2017, 12, 31), "moved away")
    ledger.deregister_volunteer(ADMIN, left_jan_1_next, date(2018, 1, 1), "moved away")
    ledger.deregister_volunteer(ADMIN, left_jan_1, date(2017, 1, 1), "moved away")
    ledger.deregister_volunteer(ADMIN, earlier, date(2017, 1, 2), "moved away")
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {"min_registered_days": 365})
    models.catch_up()

    answer = models.eligibility(BEAUTIFUL, 2017)

    assert answer is not None
    days = {item["candidate_id"]: criteria_of(item)["min_registered_days"]
            for item in answer["items"]}
    assert days == {stayed: (365, 365, True), left_jan_1_next: (365, 365, True),
                    late: (365, 1, False)}
    for gone in (left_jan_1, left_feb_24, left_dec_31, earlier):
        with pytest.raises(NotFound):
            models.eligibility(BEAUTIFUL, 2017, gone)


def test_an_award_goes_only_to_a_candidate_of_its_year(ledger: Ledger,
                                                       models: ReadModels) -> None:
    """Granting agrees with eligibility: a volunteer registered on no day of the year, or a
    unit closed before it began, is a 409; a unit closed after the year keeps its merit."""
    from ledger.errors import NotACandidate

    unit = make_unit(ledger, "community")
    joined_2019 = make_volunteer(ledger, unit, registered_on=date(2019, 1, 1))
    left_2016 = make_volunteer(ledger, unit, registered_on=date(2016, 1, 1))
    ledger.deregister_volunteer(ADMIN, left_2016, date(2016, 12, 1), "moved away")
    left_jan_1 = make_volunteer(ledger, unit, registered_on=date(2016, 1, 1))
    ledger.deregister_volunteer(ADMIN, left_jan_1, date(2017, 1, 1), "moved away")
    left_dec_31 = make_volunteer(ledger, unit, registered_on=date(2016, 1, 1))
    ledger.deregister_volunteer(ADMIN, left_dec_31, date(2017, 12, 31), "moved away")
    left_next_year = make_volunteer(ledger, unit, registered_on=date(2016, 1, 1))
    ledger.deregister_volunteer(ADMIN, left_next_year, date(2018, 1, 1), "moved away")
    served = make_volunteer(ledger, unit, registered_on=date(2017, 12, 31))
    closed_after = make_unit(ledger, "organisation")
    closed_before = make_unit(ledger, "organisation")
    ledger.close_unit(ADMIN, closed_after, date(2018, 1, 1), "merged")
    ledger.close_unit(ADMIN, closed_before, date(2017, 1, 1), "merged")
    ledger.publish_award_rules(ADMIN, BEAUTIFUL, 2017, {"min_registered_days": 0})
    ledger.publish_award_rules(ADMIN, "best_organisation", 2017, {"min_hours_in_year": 0})
    for refused in (joined_2019, left_2016, left_jan_1, left_dec_31):
        with pytest.raises(NotACandidate) as caught:
            ledger.grant_award(COMMITTEE, BEAUTIFUL, 2017, refused, "decision 1")
        assert caught.value.field == "recipient_id"
    with pytest.raises(NotACandidate):
        ledger.grant_award(COMMITTEE, "best_organisation", 2017, closed_before, "decision 2")
    ledger.grant_award(COMMITTEE, BEAUTIFUL, 2017, served, "decision 3")
    ledger.grant_award(COMMITTEE, BEAUTIFUL, 2017, left_next_year, "decision 5")
    ledger.grant_award(COMMITTEE, "best_organisation", 2017, closed_after, "decision 4")
    models.catch_up()

    organisations = models.eligibility("best_organisation", 2017)
    assert organisations is not None
    ids = {item["candidate_id"] for item in organisations["items"]}
    assert closed_after in ids and closed_before not in ids


@given(st.integers(0, 10**7), st.integers(1, 10**4),
       st.one_of(st.integers(0, 10**4), st.floats(0, 10**4, allow_nan=False).map(
           lambda f: round(f, 3))))
def test_hours_are_checked_as_written(minutes: int, per: int, required: float) -> None:
    # Whole-number arithmetic must answer what exact fractions do: hours = minutes / (60·per),
    # against the requirement as written, shown rounded down on its decimal grid.
    written = Decimal(str(required))
    scale = 10 ** max(2, -int(written.as_tuple().exponent))
    hours = Fraction(minutes, 60 * per)
    assert _hours_check(minutes, per, required) == (
        math.floor(hours * scale) / scale, hours >= Fraction(written))
