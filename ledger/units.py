"""Units: towns, subdistricts, departments, civilized units, schools, communities, stations."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from eventsourcing.domain import event

from ledger.aggregate import LedgerAggregate
from ledger.errors import ClosedReference, InvalidField


def new_unit_id() -> str:
    return f"unit-{uuid4().hex[:16]}"


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

    def rename(self, name: str, meta: dict[str, Any]) -> None:
        """Give the unit a new name."""
        if not name.strip():
            raise InvalidField("name must not be empty", "name")
        self._ensure_open()
        self._renamed(name=name.strip(), **meta)

    def move(self, parent_id: str | None, meta: dict[str, Any]) -> None:
        """Place the unit under another parent (the parent is checked by the ledger)."""
        self._ensure_open()
        self._moved(parent_id=parent_id, **meta)

    def close(self, closed_on: str, reason: str, meta: dict[str, Any]) -> None:
        """Close the unit: nothing new may refer to it from then on."""
        if not reason.strip():
            raise InvalidField("reason must not be empty", "reason")
        self._ensure_open()
        self._closed(closed_on=closed_on, reason=reason.strip(), **meta)

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
