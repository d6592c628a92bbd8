"""Closing a unit against the service the views credit to it, while other writes go on."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from ledger import Ledger
from ledger.errors import CreditedAfterClosure
from ledger.registry import ServiceFacts
from projections import ReadModels
from tests.factories import (
    ADMIN,
    make_long_activity,
    make_unit,
    make_volunteer,
    serve,
    transfer,
)

CLOSED_ON = date(2017, 3, 5)


def facts_then(models: ReadModels, unit: str, other: Any) -> Any:
    """What the closure reads (views caught up), with `other` landing after the first read:
    a write made while the closure is being decided."""
    ran: list[bool] = []

    def service() -> ServiceFacts:
        models.catch_up()
        facts = models.service_facts(unit)
        if not ran:
            ran.append(True)
            other()
        return facts

    return service


def test_service_facts_name_the_last_day_and_every_member(ledger: Ledger,
                                                          models: ReadModels) -> None:
    unit, other = make_unit(ledger), make_unit(ledger)
    person = make_volunteer(ledger, unit)
    activity = make_long_activity(ledger, other)
    serve(ledger, person, activity, date(2017, 3, 1))
    transfer(ledger, person, other, date(2017, 4, 1))
    serve(ledger, person, activity, date(2017, 5, 1))
    models.catch_up()
    facts = models.service_facts(unit)
    assert (facts.last_service_on, facts.members) == ("2017-03-01", {person})
    assert facts.position == ledger.head()
    assert models.service_facts(other).last_service_on == "2017-05-01"


@pytest.mark.parametrize("basis", ["organised", "members", "joined"])
def test_a_closure_that_service_stored_meanwhile_contradicts_is_refused(
        ledger: Ledger, models: ReadModels, basis: str) -> None:
    unit, elsewhere = make_unit(ledger), make_unit(ledger)
    member = make_volunteer(ledger, unit)
    outsider = make_volunteer(ledger, elsewhere)
    organised, other_activity = make_long_activity(ledger, unit), make_long_activity(
        ledger, elsewhere)
    writes = {
        "organised": lambda: serve(ledger, outsider, organised, date(2017, 3, 10)),
        "members": lambda: serve(ledger, member, other_activity, date(2017, 3, 10)),
        "joined": lambda: (transfer(ledger, outsider, unit, date(2017, 3, 8)),
                           serve(ledger, outsider, other_activity, date(2017, 3, 10))),
    }
    with pytest.raises(CreditedAfterClosure, match="2017-03-10") as refused:
        ledger.close_unit(ADMIN, unit, CLOSED_ON, "merged",
                          facts_then(models, unit, writes[basis]))
    assert refused.value.field == "closed_on"
    assert ledger.get_unit(unit).closed_on is None


def test_a_closure_goes_through_service_elsewhere_stored_meanwhile(
        ledger: Ledger, models: ReadModels) -> None:
    unit, elsewhere = make_unit(ledger), make_unit(ledger)
    make_volunteer(ledger, unit)
    outsider = make_volunteer(ledger, elsewhere)
    activity = make_long_activity(ledger, elsewhere)
    ledger.close_unit(ADMIN, unit, CLOSED_ON, "merged", facts_then(
        models, unit, lambda: serve(ledger, outsider, activity, date(2017, 3, 10))))
    assert ledger.get_unit(unit).closed_on == CLOSED_ON.isoformat()
