"""Activities as a list: what `GET /v1/activities/{id}` answers, one row each, paged by start.

A view of its own (`activities`), not columns of the credits view: it reads two event types of
few aggregates, and adding it rebuilds nothing else. Instants are kept as the events wrote them
(what GET one answers) and as UTC text of fixed width, which orders and compares as time does
whatever offset the planner wrote (`+08:00` and `Z` side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.feed import FeedEvent
from projections.pages import equal_to, page_rows, read_snapshot
from projections.store import ViewCursor
from projections.tally import Latest, TableViews

TABLES: dict[str, tuple[str, ...]] = {"activity_list": ("activity_id",)}

DDL = (
    "CREATE TABLE IF NOT EXISTS activity_list (activity_id TEXT PRIMARY KEY, "
    "program_code TEXT NOT NULL, organiser_unit_id TEXT NOT NULL, station_unit_id TEXT, "
    "title TEXT NOT NULL, place TEXT, starts_at TEXT NOT NULL, ends_at TEXT NOT NULL, "
    "starts_utc TEXT NOT NULL, ends_utc TEXT NOT NULL, cancelled_at TEXT, "
    "version INTEGER NOT NULL)",
    # Pages run in start order, of everyone's activities or of one organiser's.
    "CREATE INDEX IF NOT EXISTS activity_list_by_start ON activity_list (starts_utc, activity_id)",
    "CREATE INDEX IF NOT EXISTS activity_list_by_organiser "
    "ON activity_list (organiser_unit_id, starts_utc, activity_id)",
)

HANDLED = frozenset({"Activity.Planned", "Activity.Cancelled"})
STATUSES = ("active", "cancelled", "all")
COLUMNS = ("program_code", "organiser_unit_id", "station_unit_id", "title", "place",
           "starts_at", "ends_at", "starts_utc", "ends_utc", "cancelled_at", "version")


def utc_key(instant: datetime | str) -> str:
    """An instant as UTC text of fixed width (to the microsecond), ordered as time is."""
    if isinstance(instant, str):
        instant = datetime.fromisoformat(instant)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ActivitiesProjection(TableViews):
    """Each activity planned, and when it was cancelled."""

    name = "activities"
    schema_version = 1
    tables = TABLES
    ddl = DDL

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        """Fold a page of events and write the changes."""
        rows = Latest("activity_list", "activity_id", COLUMNS)
        for e in events:
            if e.type not in HANDLED:
                continue
            d = e.data
            if e.type == "Activity.Planned":
                rows.create(e.originator_id, program_code=d["program_code"],
                            organiser_unit_id=d["organiser_unit_id"],
                            station_unit_id=d["station_unit_id"], title=d["title"],
                            place=d["place"], starts_at=d["starts_at"], ends_at=d["ends_at"],
                            starts_utc=utc_key(d["starts_at"]), ends_utc=utc_key(d["ends_at"]),
                            cancelled_at=None, version=e.version)
            else:
                rows.update(e.originator_id, cancelled_at=e.recorded_at, version=e.version)
        rows.write(cur)


@dataclass(frozen=True)
class ActivityQuery:
    """Which activities a page lists: organised by a unit, of a program, whose window
    overlaps [`start`, `end`] (UTC keys, either end open), cancelled or not (`status`)."""

    organiser_unit_id: str | None = None
    program_code: str | None = None
    start: str | None = None
    end: str | None = None
    status: str = "all"


def activities_page(cur: ViewCursor, query: ActivityQuery, after: Sequence[str] | None,
                    count: int) -> tuple[int, list[dict[str, Any]]]:
    """The position the view has read to, and at most `count` activities after the key
    `after` (`utc_key` of the start, id) in order of start."""
    position = read_snapshot(cur, ("activities",))
    where, params = equal_to((("organiser_unit_id", query.organiser_unit_id),
                              ("program_code", query.program_code)))
    if query.start is not None:  # windows are inclusive at both ends
        where.append("ends_utc >= ?")
        params.append(query.start)
    if query.end is not None:
        where.append("starts_utc <= ?")
        params.append(query.end)
    if query.status == "active":
        where.append("cancelled_at IS NULL")
    elif query.status == "cancelled":
        where.append("cancelled_at IS NOT NULL")
    rows = page_rows(
        cur, "SELECT activity_id, title, program_code, organiser_unit_id, station_unit_id, "
        "place, starts_at, ends_at, cancelled_at, version FROM activity_list", where, params,
        ("starts_utc", "activity_id"), after, count)
    return position, [{
        "id": aid, "title": title, "program_code": program, "organiser_unit_id": organiser,
        "station_unit_id": station, "place": place, "starts_at": starts, "ends_at": ends,
        "cancelled": cancelled is not None, "cancelled_at": cancelled, "version": int(version),
    } for aid, title, program, organiser, station, place, starts, ends, cancelled, version
        in rows]
