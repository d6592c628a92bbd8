"""Activities: one organised occurrence of a program, at a station or place, in a time window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import event

from ledger.aggregate import LedgerAggregate
from ledger.errors import ClosedReference, FieldChecks, InvalidField
from ledger.ids import new_id
from ledger.text import check_reason


def new_activity_id() -> str:
    return new_id("act")


class Activity(LedgerAggregate):
    """A planned activity; sessions may be recorded only inside its window."""

    id: str  # chosen by the ledger, see ledger.aggregate


    @event("Planned")
    def __init__(
        self,
        program_code: str,
        organiser_unit_id: str,
        title: str,
        starts_at: datetime,
        ends_at: datetime,
        station_unit_id: str | None,
        place: str | None,
        actor: dict[str, Any],
        source: str,
    ) -> None:
        self.program_code = program_code
        self.organiser_unit_id = organiser_unit_id
        self.title = title
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.station_unit_id = station_unit_id
        self.place = place
        self.cancelled_reason: str | None = None

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_reason is not None

    def ensure_covers(self, started_at: datetime, ended_at: datetime, margin: timedelta,
                      allow_cancelled: bool = False) -> None:
        """Refuse a session that lies outside the window (inclusive, widened by the margin)."""
        if self.is_cancelled and not allow_cancelled:
            raise ClosedReference(f"activity {self.id} was cancelled", "activity_id")
        early, late = started_at < self.starts_at - margin, ended_at > self.ends_at + margin
        if not (early or late):
            return
        checks = FieldChecks(("started_at", "ended_at"))  # both ends, when both are out
        if early:
            checks.add(InvalidField(
                f"started_at is before the activity starts ({self.starts_at.isoformat()})",
                "started_at"))
        if late:
            checks.add(InvalidField(
                f"ended_at is after the activity ends ({self.ends_at.isoformat()})", "ended_at"))
        checks.raise_found()

    def cancel(self, reason: str, meta: dict[str, Any]) -> None:
        """Cancel the activity; sessions already recorded stay until corrected or voided."""
        reason = check_reason(reason)
        if self.is_cancelled:
            raise ClosedReference(f"activity {self.id} was already cancelled")
        self._cancelled(reason=reason, **meta)

    @event("Cancelled")
    def _cancelled(self, reason: str, actor: dict[str, Any], source: str) -> None:
        self.cancelled_reason = reason
