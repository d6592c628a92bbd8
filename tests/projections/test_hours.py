"""Volunteer hours: breakdowns, corrections, voids, trainings and stars."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from ledger import PROGRAMS, Ledger
from projections import ReadModels
from tests.factories import (
    ADMIN,
    at,
    make_long_activity,
    make_unit,
    make_volunteer,
    record,
    serve,
    train,
)


def test_a_recorded_session_counts_in_every_breakdown(ledger: Ledger, models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger), "B6")
    written = serve(ledger, volunteer, activity, date(2017, 5, 4), hours=1.5)
    models.catch_up()

    hours = models.volunteer_hours(volunteer)

    assert hours is not None
    assert hours["total_minutes"] == 90 and hours["total_hours"] == 1.5
    assert hours["by_category"] == {"A": 0, "B": 90, "C": 0}
    assert set(hours["by_program"]) == set(PROGRAMS) and hours["by_program"]["B6"] == 90
    assert sum(hours["by_program"].values()) == 90
    assert hours["by_year"] == {"2017": 90}
    assert hours["by_quarter"] == {"2017-Q2": 90}
    assert hours["sessions"] == 1
    assert hours["last_service_date"] == "2017-05-04"
    assert hours["star_level"] == 0
    assert hours["position"] >= written.position


def test_an_unknown_volunteer_has_no_hours(models: ReadModels) -> None:
    models.catch_up()
    assert models.volunteer_hours("vol-nobody") is None


def test_a_correction_moves_minutes_to_another_year(ledger: Ledger, models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger), "C4")
    written = serve(ledger, volunteer, activity, date(2018, 1, 1), hours=2)
    models.catch_up()
    ledger.correct_session(ADMIN, written.id, at(9, day=date(2017, 12, 31)),
                           at(12, day=date(2017, 12, 31)), "wrong day on the sheet")
    models.catch_up()

    hours = models.volunteer_hours(volunteer)

    assert hours is not None
    assert hours["by_year"] == {"2017": 180}
    assert hours["by_quarter"] == {"2017-Q4": 180}
    assert hours["total_minutes"] == 180 and hours["sessions"] == 1
    assert hours["last_service_date"] == "2017-12-31"


def test_a_voided_session_no_longer_counts(ledger: Ledger, models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger), "A2")
    serve(ledger, volunteer, activity, date(2017, 2, 1), hours=1)
    later = serve(ledger, volunteer, activity, date(2017, 8, 1), hours=3)
    ledger.void_session(ADMIN, later.id, "recorded for the wrong volunteer")
    models.catch_up()

    hours = models.volunteer_hours(volunteer)

    assert hours is not None
    assert hours["total_minutes"] == 60 and hours["sessions"] == 1
    assert hours["by_quarter"] == {"2017-Q1": 60}
    assert hours["last_service_date"] == "2017-02-01"


def test_a_session_counts_on_its_date_in_district_time(ledger: Ledger,
                                                       models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger))
    # 16:30 UTC on 31 March is 00:30 on 1 April in Shanghai: the second quarter.
    started = datetime(2017, 3, 31, 16, 30, tzinfo=UTC)
    record(ledger, volunteer, activity, started, started + timedelta(hours=1))
    models.catch_up()

    hours = models.volunteer_hours(volunteer)

    assert hours is not None and hours["by_quarter"] == {"2017-Q2": 60}
    assert hours["last_service_date"] == "2017-04-01"


def test_training_hours_are_kept_apart_from_service_hours(ledger: Ledger,
                                                          models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    train(ledger, volunteer, date(2017, 3, 1), hours=2.5)
    models.catch_up()

    hours = models.volunteer_hours(volunteer)

    assert hours is not None
    assert hours["training_minutes"] == 150 and hours["training_hours"] == 2.5
    assert hours["total_minutes"] == 0 and hours["sessions"] == 0
    assert hours["last_service_date"] is None


def test_the_star_level_follows_cumulative_hours(ledger: Ledger, models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger))
    for day in range(1, 6):
        serve(ledger, volunteer, activity, date(2017, 6, day), hours=20, start_hour=1)
    models.catch_up()

    hours = models.volunteer_hours(volunteer)

    assert hours is not None and hours["total_hours"] == 100.0 and hours["star_level"] == 1


def test_hours_are_shown_rounded_down_so_they_never_pass_a_star_they_do_not_reach(
        ledger: Ledger, models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger))
    for day in range(1, 6):  # 5,999 minutes: one short of the first star's 100 h
        serve(ledger, volunteer, activity, date(2017, 6, day),
              hours=20 if day < 5 else 20 - 1 / 60, start_hour=1)
    models.catch_up()

    hours = models.volunteer_hours(volunteer)

    assert hours is not None and hours["total_minutes"] == 5999
    assert hours["total_hours"] == 99.98 and hours["star_level"] == 0
