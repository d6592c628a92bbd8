"""Unit rankings: units of one kind ranked by minutes credited in a period, ties sharing a rank."""

from __future__ import annotations

from datetime import date
from typing import Any

from ledger.catalogue import UnitKind
from ledger.errors import InvalidField
from projections.credits import ALL, BASES
from projections.hours import hours
from projections.store import ViewCursor


def period_filter(basis: str, year: int | None, quarter: int | None,
                  column_prefix: str = "") -> tuple[str, list[Any]]:
    """The WHERE clause over credit cells for a basis and an optional year and quarter."""
    c = column_prefix
    if basis not in BASES:
        raise InvalidField(f"basis must be one of: {', '.join(BASES)}", "basis")
    where, params = f"{c}basis = ?", list[Any]([basis])
    if quarter is not None:
        if year is None:
            raise InvalidField("a quarter needs a year", "quarter")
        if not 1 <= quarter <= 4:
            raise InvalidField("quarter must be 1, 2, 3 or 4", "quarter")
    if year is not None:
        where += f" AND {c}year = ?"
        params.append(year)
    if quarter is not None:
        where += f" AND {c}quarter = ?"
        params.append(quarter)
    return where, params


# A unit as the credits view knows it: (name, kind, parent id, closed on).
UnitRow = tuple[str, str, str | None, str | None]


def units_of(cur: ViewCursor) -> dict[str, UnitRow]:
    """Every unit the view knows: id → (name, kind, parent id, closed on)."""
    rows = cur.execute(
        "SELECT unit_id, name, kind, parent_id, closed_on FROM credit_units").fetchall()
    return {uid: (name, kind, parent, closed) for uid, name, kind, parent, closed in rows}


def rank(totals: dict[str, int]) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4) by descending total."""
    ordered = sorted(totals.values(), reverse=True)
    first: dict[int, int] = {}
    for i, total in enumerate(ordered):
        first.setdefault(total, i + 1)
    return {uid: first[total] for uid, total in totals.items()}


def unit_rankings(cur: ViewCursor, kind: str, basis: str = "members", year: int | None = None,
                  quarter: int | None = None, rollup: bool = False) -> list[dict[str, Any]]:
    """Every unit of a kind with its credited minutes, volunteers and sessions, ranked."""
    if kind not in set(UnitKind):
        raise InvalidField(f"kind must be one of: {', '.join(UnitKind)}", "kind")
    where, params = period_filter(basis, year, quarter)
    units = units_of(cur)
    chosen = {uid for uid, (_, k, _, _) in units.items() if k == kind}
    # A unit closed before the period began is not ranked for it, unless sessions of the
    # period are credited to it all the same (then they are shown).
    closed: set[str] = set()
    if year is not None:
        begins = date(year, 3 * (quarter or 1) - 2, 1).isoformat()
        closed = {uid for uid in chosen if (on := units[uid][3]) is not None and on <= begins}
    minutes = dict.fromkeys(chosen, 0)
    sessions = dict.fromkeys(chosen, 0)
    if not rollup:
        # One row per unit with service in the period, kept by the credits view.
        rows = cur.execute(
            "SELECT t.unit_id, t.minutes, t.sessions, t.volunteers FROM credit_unit_totals t "
            "JOIN credit_units u ON u.unit_id = t.unit_id "
            "WHERE t.basis = ? AND t.year = ? AND t.quarter = ? AND u.kind = ?",
            (basis, year or ALL, quarter or ALL, kind)).fetchall()
        counts = dict.fromkeys(chosen, 0)
        for unit_id, m, s, v in rows:
            minutes[unit_id], sessions[unit_id], counts[unit_id] = int(m), int(s), int(v)
        return _ranked(kind, units, _open(chosen, closed, sessions), minutes, sessions, counts)
    volunteers: dict[str, set[str]] = {uid: set() for uid in chosen}
    own = dict.fromkeys(chosen, 0)  # sessions credited to the unit itself, not a descendant
    rows = cur.execute(
        "SELECT unit_id, volunteer_id, SUM(minutes), SUM(sessions) FROM credit_cells "
        f"WHERE {where} GROUP BY unit_id, volunteer_id", params).fetchall()
    for unit_id, volunteer_id, m, s in rows:
        if unit_id in own:
            own[unit_id] += int(s)
        for uid in _credited(unit_id, units, chosen, rollup):
            minutes[uid] += int(m)
            sessions[uid] += int(s)
            volunteers[uid].add(volunteer_id)
    return _ranked(kind, units, _open(chosen, closed, own), minutes, sessions,
                   {uid: len(volunteers[uid]) for uid in chosen})


def _open(chosen: set[str], closed: set[str], own: dict[str, int]) -> set[str]:
    """The chosen units but those closed before the period with no session credited to
    themselves in it: a town closed in 2017 is not ranked in 2018's roll-up for the service
    of a community under it (bb17 F1)."""
    return {uid for uid in chosen if uid not in closed or own[uid]}


def _ranked(kind: str, units: dict[str, UnitRow], chosen: set[str],
            minutes: dict[str, int], sessions: dict[str, int],
            volunteers: dict[str, int]) -> list[dict[str, Any]]:
    """The ranking items of the chosen units, ranked among themselves, in rank order."""
    ranks = rank({uid: minutes[uid] for uid in chosen})
    items = [
        {
            "rank": ranks[uid], "unit_id": uid, "name": units[uid][0], "kind": kind,
            "total_minutes": minutes[uid], "total_hours": hours(minutes[uid]),
            "volunteers": volunteers[uid],
            "minutes_per_volunteer": per_volunteer(minutes[uid], volunteers[uid]),
            "sessions": sessions[uid],
        }
        for uid in chosen
    ]
    return sorted(items, key=lambda item: (item["rank"], item["unit_id"]))


def per_volunteer(minutes: int, volunteers: int) -> float:
    """Minutes per volunteer rounded to the hundredth, halves up, computed exactly: a
    float's round() gave 2.67 for 107 / 40 = 2.675, stored as 2.67499… (bb25 F1)."""
    if not volunteers:
        return 0.0
    return (200 * minutes + volunteers) // (2 * volunteers) / 100


def _credited(unit_id: str, units: dict[str, UnitRow], chosen: set[str],
              rollup: bool) -> list[str]:
    """The ranked units a credit of `unit_id` counts for: itself, or with roll-up its ancestors."""
    if not rollup:
        return [unit_id] if unit_id in chosen else []
    found, seen = [], set()
    current: str | None = unit_id
    while current is not None and current not in seen:
        seen.add(current)
        if current in chosen:
            found.append(current)
        current = units[current][2] if current in units else None
    return found
