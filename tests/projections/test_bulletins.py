"""Quarterly bulletins: per unit, one program's service in one quarter."""

from __future__ import annotations

from datetime import date

from ledger import Ledger
from projections import ReadModels
from tests.factories import make_long_activity, make_unit, make_volunteer, serve


def test_the_bulletin_lists_units_with_online_service_busiest_first(
        ledger: Ledger, models: ReadModels) -> None:
    school, unit, quiet = (make_unit(ledger, kind) for kind in ("school", "department", "school"))
    people = [make_volunteer(ledger, school) for _ in range(2)]
    for person in people:
        serve(ledger, person, make_long_activity(ledger, school, "B6"), date(2017, 2, 1), 2)
    serve(ledger, people[0], make_long_activity(ledger, unit, "B6"), date(2017, 3, 1), 1)
    serve(ledger, people[0], make_long_activity(ledger, quiet, "C1"), date(2017, 3, 2), 5)
    serve(ledger, people[1], make_long_activity(ledger, quiet, "B6"), date(2017, 4, 2), 5)
    models.catch_up()

    items = models.bulletin(2017, 1)

    assert [(i["unit_id"], i["total_minutes"], i["sessions"], i["volunteers"]) for i in items] == [
        (school, 240, 2, 2), (unit, 60, 1, 1)]
    assert items[0]["kind"] == "school"


def test_a_bulletin_can_cover_any_program_on_the_members_basis(
        ledger: Ledger, models: ReadModels) -> None:
    home, organiser = make_unit(ledger, "community"), make_unit(ledger, "organisation")
    volunteer = make_volunteer(ledger, home)
    serve(ledger, volunteer, make_long_activity(ledger, organiser, "C1"), date(2017, 11, 1), 3)
    models.catch_up()

    assert [i["unit_id"] for i in models.bulletin(2017, 4, "C1")] == [organiser]
    assert [i["unit_id"] for i in models.bulletin(2017, 4, "C1", basis="members")] == [home]
    assert models.bulletin(2017, 4) == []
