"""Units: towns, subdistricts, departments, civilized units, schools, communities, stations."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import event

from ledger.aggregate import LedgerAggregate
from ledger.catalogue import UnitKind
from ledger.errors import ClosedReference, InvalidField
from ledger.ids import new_id
from ledger.text import check_reason, check_text


def new_unit_id() -> str:
    return new_id("unit")


class Unit(LedgerAggregate):
    """A responsible or organising unit in the district hierarchy."""

    id: str  # chosen by the ledger, see ledger.aggregate


    @event("Registered")
    def __init__(
        self,
        name: str,
        kind: str,
        parent_id: str | None,
        civilized_level: str | None,
        actor: dict[str, Any],
        source: str,
    ) -> None:
        self.name = name
        self.kind = kind
        self.parent_id = parent_id
        self.civilized_level = civilized_level
        self.closed_on: str | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_on is None

    def ensure_open_on(self, day: str, field: str, what: str) -> None:
        """Refuse `what` on a day (ISO date) on or after the unit's closing date.

        The one rule for what a unit organises or hosts (as its station), sessions and
        activities, new records and corrections alike: a unit closed on D had its last day of
        service on the day before D. What happened before D may still be recorded late, as it
        truthfully happened; on D or after, 409 as any closed reference, naming `field`.
        """
        if self.closed_on is not None and day >= self.closed_on:
            raise ClosedReference(
                f"{day} is not before unit {self.id} was closed ({self.closed_on}): only "
                f"{what} before that date may be recorded", field)

    def rename(self, name: str, meta: dict[str, Any]) -> None:
        """Give the unit a new name."""
        name = check_text("name", name)
        self._ensure_open()
        self._renamed(name=name, **meta)

    def move(self, parent_id: str | None, meta: dict[str, Any]) -> None:
        """Place the unit under another parent (the parent is checked by the ledger)."""
        self._ensure_open()
        self._moved(parent_id=parent_id, **meta)

    def close(self, closed_on: str, reason: str, meta: dict[str, Any]) -> None:
        """Close the unit: nothing new may refer to it from then on."""
        reason = check_reason(reason)
        self._ensure_open()
        self._closed(closed_on=closed_on, reason=reason, **meta)

    def _ensure_open(self) -> None:
        if not self.is_open:
            raise ClosedReference(f"unit {self.id} was closed on {self.closed_on}")

    @event("Renamed")
    def _renamed(self, name: str, actor: dict[str, Any], source: str) -> None:
        self.name = name

    @event("Moved")
    def _moved(self, parent_id: str | None, actor: dict[str, Any], source: str) -> None:
        self.parent_id = parent_id


    @event("Closed")
    def _closed(self, closed_on: str, reason: str, actor: dict[str, Any], source: str) -> None:
        self.closed_on = closed_on


def check_parent(kind: str, parent: Unit | None) -> None:
    """The district hierarchy (district → town/subdistrict → community): a district is its top
    and has no parent; a town or subdistrict, when placed under a unit, is placed under a
    district. Other kinds may sit under any unit."""
    if parent is None:
        return
    if kind == UnitKind.district:
        raise InvalidField(f"parent_id must be empty for a unit of kind district: a district is "
                           f"the top of the hierarchy (got unit {parent.id})", "parent_id")
    if kind in (UnitKind.town, UnitKind.subdistrict) and parent.kind != UnitKind.district:
        raise InvalidField(f"parent_id must name a unit of kind district for a {kind} "
                           f"(unit {parent.id} is of kind {parent.kind})", "parent_id")
