"""The directory: pages of volunteers (with the unit each registered with and the one each
belongs to today) and of units.

Read from the tables the hours and credits views keep (`hours_volunteers`, `hours_cells`,
`credit_memberships`, `credit_units`): no view of its own. A volunteer's unit today is not a
stored fact (a transfer recorded earlier takes effect on its `effective_on` with no event on
that day), so it is read from their memberships at the day asked, as `unit_on` reads them.

Pages are cut by key (the last volunteer number or unit id served), not by offset: a volunteer
transferred out of a unit or deregistered between two pages moves no other one across a page
boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.catalogue import star_level
from projections.pages import equal_to, page_rows, read_snapshot
from projections.store import ViewCursor

STATUSES = ("active", "deregistered", "all")

# The unit of volunteer `v` on a day (the parameter): the membership in effect that day, or
# the first one for a day before it (as credits.unit_on). One index seek each.
UNIT_ON = (
    "COALESCE((SELECT t.unit_id FROM credit_memberships t WHERE t.volunteer_id = v.volunteer_id "
    "AND t.effective_on <= ? ORDER BY t.effective_on DESC LIMIT 1), "
    "(SELECT t.unit_id FROM credit_memberships t WHERE t.volunteer_id = v.volunteer_id "
    "ORDER BY t.effective_on LIMIT 1))")
_MINUTES = ("(SELECT COALESCE(SUM(c.minutes), 0) FROM hours_cells c "
            "WHERE c.volunteer_id = v.volunteer_id)")


@dataclass(frozen=True)
class VolunteerQuery:
    """Which volunteers a page lists: as of `today` (ISO, district time), members of a unit on
    that day (`unit_id`: their current unit), whose names begin with `name`, active on that
    day or not (`status`)."""

    today: str
    unit_id: str | None = None
    name: str | None = None
    status: str = "active"


def _snapshot(cur: ViewCursor) -> int:
    """The read's snapshot of the hours and credits views, and the position they read to."""
    return read_snapshot(cur, ("hours", "credits"), ("hours_filling", "credit_filling"))


def volunteers_page(cur: ViewCursor, query: VolunteerQuery, after: Sequence[str] | None,
                    count: int) -> tuple[int, list[dict[str, Any]]]:
    """The position read to, and at most `count` volunteers after the key `after`
    (volunteer number, id) in volunteer-number order. No personal data: the views hold none."""
    position = _snapshot(cur)
    params: list[Any] = [query.today]
    where: list[str] = []
    if query.unit_id is not None:
        # Those who were ever members of the unit (an index range), then those who are today.
        where.append("v.volunteer_id IN (SELECT m.volunteer_id FROM credit_memberships m "
                     f"WHERE m.unit_id = ?) AND {UNIT_ON} = ?")
        params += [query.unit_id, query.today, query.unit_id]
    if query.name:
        where.append("substr(v.name, 1, CAST(? AS INTEGER)) = ?")
        params += [len(query.name), query.name]
    if query.status == "active":
        where.append("(v.deregistered_on IS NULL OR v.deregistered_on > ?)")
        params.append(query.today)
    elif query.status == "deregistered":
        where.append("v.deregistered_on <= ?")
        params.append(query.today)
    rows = page_rows(
        cur, "SELECT v.volunteer_id, v.volunteer_number, v.name, v.home_unit_id, "
        f"v.registered_on, v.deregistered_on, {UNIT_ON}, {_MINUTES} FROM hours_volunteers v",
        where, params, ("v.volunteer_number", "v.volunteer_id"), after, count)
    return position, [{
        "id": vid, "volunteer_number": number, "name": name, "home_unit_id": home,
        "current_unit_id": unit, "registered_on": registered, "deregistered_on": deregistered,
        "total_minutes": int(minutes), "star_level": star_level(int(minutes)),
    } for vid, number, name, home, registered, deregistered, unit, minutes in rows]


def units_page(cur: ViewCursor, kind: str | None, parent_id: str | None,
               after: Sequence[str] | None, count: int) -> tuple[int, list[dict[str, Any]]]:
    """The position read to, and at most `count` units after the id `after`, in id order."""
    position = _snapshot(cur)
    where, params = equal_to((("kind", kind), ("parent_id", parent_id)))
    rows = page_rows(cur, "SELECT unit_id, name, kind, parent_id, civilized_level, closed_on "
                     "FROM credit_units", where, params, ("unit_id",), after, count)
    return position, [{
        "id": uid, "name": name, "kind": kind, "parent_id": parent,
        "civilized_level": level, "closed_on": closed,
    } for uid, name, kind, parent, level, closed in rows]


def knows_unit(cur: ViewCursor, unit_id: str) -> bool:
    """Whether the credits view holds the unit."""
    return cur.execute("SELECT 1 FROM credit_units WHERE unit_id = ?",
                       (unit_id,)).fetchone() is not None
