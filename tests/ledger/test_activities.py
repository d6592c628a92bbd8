"""Activities: planned for one program by an organiser unit in a time window; cancelled."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from ledger import Ledger
from ledger.errors import ClosedReference, InvalidField, UnknownReference
from tests.factories import (
    ACTIVITY_ENDS,
    ACTIVITY_STARTS,
    ADMIN,
    make_activity,
    make_unit,
    make_volunteer,
    record,
)


def plan(ledger: Ledger, organiser: str, **changes: object) -> str:
    args: dict[str, object] = {"program_code": "B5", "organiser_unit_id": organiser,
                               "title": "学雷锋纪念日便民服务", "starts_at": ACTIVITY_STARTS,
                               "ends_at": ACTIVITY_ENDS}
    args.update(changes)
    return ledger.plan_activity(ADMIN, **args).id  # type: ignore[arg-type]


def test_an_activity_is_planned_for_a_program_organiser_and_window(ledger: Ledger) -> None:
    organiser, station = make_unit(ledger), make_unit(ledger, kind="station")
    activity = ledger.get_activity(plan(ledger, organiser, station_unit_id=station))
    assert (activity.program_code, activity.organiser_unit_id, activity.station_unit_id,
            activity.starts_at, activity.ends_at) == (
        "B5", organiser, station, ACTIVITY_STARTS, ACTIVITY_ENDS)


def test_an_activity_of_an_unknown_program_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        plan(ledger, make_unit(ledger), program_code="D1")
    assert refused.value.field == "program_code"


def test_an_activity_needs_a_title(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        plan(ledger, make_unit(ledger), title=" ")
    assert refused.value.field == "title"


def test_a_title_place_or_reason_hiding_a_format_character_is_refused(ledger: Ledger) -> None:
    organiser = make_unit(ledger)
    for field, value in (("title", "关爱\u200b空巢老人"), ("place", "起飞公园\u202e站")):
        with pytest.raises(InvalidField) as refused:
            plan(ledger, organiser, **{field: value})
        assert refused.value.field == field
    activity_id = plan(ledger, organiser, place="  ")
    assert ledger.get_activity(activity_id).place is None
    with pytest.raises(InvalidField) as refused:
        ledger.cancel_activity(ADMIN, activity_id, "下雨\ufeff取消")
    assert refused.value.field == "reason" and "U+FEFF" in refused.value.message
    assert not ledger.get_activity(activity_id).is_cancelled


def test_an_activity_must_end_after_it_starts(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        plan(ledger, make_unit(ledger), ends_at=ACTIVITY_STARTS)
    assert refused.value.field == "ends_at"


def test_an_activity_window_needs_offsets(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        plan(ledger, make_unit(ledger), starts_at=datetime(2017, 3, 5, 8, 0))
    assert refused.value.field == "starts_at"


def test_an_activity_needs_a_known_organiser(ledger: Ledger) -> None:
    with pytest.raises(UnknownReference) as refused:
        plan(ledger, "unit-nope")
    assert refused.value.field == "organiser_unit_id"


def test_an_activity_may_not_be_organised_by_a_closed_unit(ledger: Ledger) -> None:
    organiser = make_unit(ledger)
    ledger.close_unit(ADMIN, organiser, date(2017, 1, 31), "merged")
    with pytest.raises(ClosedReference) as refused:
        plan(ledger, organiser)
    assert refused.value.field == "organiser_unit_id"


def test_an_activity_needs_a_known_station(ledger: Ledger) -> None:
    with pytest.raises(UnknownReference) as refused:
        plan(ledger, make_unit(ledger), station_unit_id="unit-nope")
    assert refused.value.field == "station_unit_id"


def test_an_activity_may_not_take_place_at_a_closed_station(ledger: Ledger) -> None:
    station = make_unit(ledger, kind="station")
    ledger.close_unit(ADMIN, station, date(2017, 1, 31), "moved")
    with pytest.raises(ClosedReference) as refused:
        plan(ledger, make_unit(ledger), station_unit_id=station)
    assert refused.value.field == "station_unit_id"


def test_a_cancelled_activity_keeps_its_reason(ledger: Ledger) -> None:
    activity_id = make_activity(ledger)
    ledger.cancel_activity(ADMIN, activity_id, "typhoon warning")
    assert ledger.get_activity(activity_id).cancelled_reason == "typhoon warning"


def test_cancelling_an_activity_needs_a_reason(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.cancel_activity(ADMIN, make_activity(ledger), "")
    assert refused.value.field == "reason"


def test_an_activity_cannot_be_cancelled_twice(ledger: Ledger) -> None:
    activity_id = make_activity(ledger)
    ledger.cancel_activity(ADMIN, activity_id, "typhoon warning")
    with pytest.raises(ClosedReference):
        ledger.cancel_activity(ADMIN, activity_id, "again")


def test_an_activity_that_ended_before_its_units_closed_may_be_planned_late(
        ledger: Ledger) -> None:
    organiser, station = make_unit(ledger), make_unit(ledger, kind="station")
    for unit in (organiser, station):
        ledger.close_unit(ADMIN, unit, ACTIVITY_ENDS.date() + timedelta(days=1), "merged")
    activity = plan(ledger, organiser, station_unit_id=station)  # ended the day before
    volunteer = make_volunteer(ledger)
    record(ledger, volunteer, activity, ACTIVITY_STARTS, ACTIVITY_STARTS + timedelta(hours=1))
    for field, unit in (("organiser_unit_id", organiser), ("station_unit_id", station)):
        late = {"station_unit_id": station} if field == "station_unit_id" else {}
        with pytest.raises(ClosedReference) as refused:
            plan(ledger, organiser if field == "organiser_unit_id" else make_unit(ledger),
                 ends_at=ACTIVITY_ENDS + timedelta(days=1), **late)
        assert refused.value.field == field, unit
