"""The aggregate base of the ledger: like eventsourcing's `Aggregate`, but with text ids.

Ids are strings the ledger chooses (`vol-…`, `ses-<uuid5 of the source record id>`,
`award-2017-…`), so uniqueness rules become the store's primary key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from eventsourcing.domain import (
    BaseAggregate,
    CanCreateTimestamp,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    MetaDomainEvent,
)


@dataclass(frozen=True)
class LedgerDomainEvent(CanCreateTimestamp, metaclass=MetaDomainEvent):
    """A frozen dataclass event whose originator id is text (eventsourcing's insists on UUID)."""

    originator_id: str
    originator_version: int
    timestamp: datetime


@dataclass(frozen=True)
class LedgerEvent(CanMutateAggregate[str], LedgerDomainEvent):
    originator_id: str
    originator_version: int
    timestamp: datetime


@dataclass(frozen=True)
class LedgerCreated(CanInitAggregate[str], LedgerEvent):
    originator_topic: str


@dataclass(frozen=True)
class LedgerSnapshot(CanSnapshotAggregate[str], LedgerDomainEvent):
    originator_id: str
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> Self:
        """The library's snapshot, without what the aggregate derives from its state."""
        snapshot = super().take(aggregate)
        for name in getattr(aggregate, "derived", ()):
            snapshot.state.pop(name, None)
        return snapshot


class LedgerAggregate(BaseAggregate[str]):
    """Base of every aggregate of the ledger."""

    class Event(LedgerEvent):
        pass

    class Created(Event, LedgerCreated):
        pass

    Snapshot = LedgerSnapshot

    # Attributes an aggregate derives from its state to answer faster (an index), built when
    # first needed: not stored in snapshots, not compared.
    derived: ClassVar[frozenset[str]] = frozenset()

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return False
        mine, theirs = vars(self), vars(other)
        return ({k: v for k, v in mine.items() if k not in self.derived}
                == {k: v for k, v in theirs.items() if k not in self.derived})

    __hash__ = BaseAggregate.__hash__


__all__ = ["LedgerAggregate", "LedgerEvent", "LedgerSnapshot"]


def event_topic(aggregate: type, event_name: str) -> str:
    """The stored topic of one of an aggregate's events (e.g. "ledger.units:Unit.Registered"),
    to select notifications of that kind."""
    return f"{aggregate.__module__}:{aggregate.__qualname__}.{event_name}"
