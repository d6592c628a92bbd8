"""Unit credits: each session's minutes credited to units on two bases, read by rankings,
bulletins and eligibility.

`organised` credits the activity's organiser unit. `members` credits the unit the volunteer
belonged to on the service date; a transfer (even one recorded later with an earlier
`effective_on`) moves the minutes already credited for the days it now covers, which is why the
view keeps each volunteer's minutes per day and program, and their memberships.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

from projections.feed import FeedEvent
from projections.filling import QUARTER_SQL, YEAR_SQL, Filling
from projections.hours import year_quarter
from projections.store import ViewCursor
from projections.tally import Latest, TableViews, Tally

BASES = ("members", "organised")

TABLES: dict[str, tuple[str, ...]] = {
    "credit_units": ("unit_id",),
    "credit_memberships": ("volunteer_id", "effective_on"),
    "credit_days": ("volunteer_id", "service_date", "program_code"),
    "credit_cells": ("basis", "year", "quarter", "program_code", "unit_id", "volunteer_id"),
    "credit_unit_totals": ("basis", "year", "quarter", "unit_id"),
    "credit_organised_days": ("unit_id", "service_date"),
    "credit_filling": (),
    "credit_fill": (),
    "credit_fill_organised": (),
    "credit_fill_active": (),
    "credit_active": ("active_key",),
}

# Periods of a unit total: (year, quarter), (year, ALL) for the whole year, (ALL, ALL) for ever.
ALL = 0
NONE_ACTIVE = (0, 0, 0, 0)

DDL = (
    "CREATE TABLE IF NOT EXISTS credit_units (unit_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "kind TEXT NOT NULL, parent_id TEXT, closed_on TEXT, civilized_level TEXT)",
    "CREATE TABLE IF NOT EXISTS credit_memberships (volunteer_id TEXT NOT NULL, "
    "effective_on TEXT NOT NULL, unit_id TEXT NOT NULL, PRIMARY KEY (volunteer_id, effective_on))",
    # A unit's members, ever: a closure's facts, and the directory of a unit's volunteers,
    # without reading every membership (projections/directory.py).
    "CREATE INDEX IF NOT EXISTS credit_memberships_by_unit "
    "ON credit_memberships (unit_id, volunteer_id)",
    "CREATE TABLE IF NOT EXISTS credit_days (volunteer_id TEXT NOT NULL, "
    "service_date TEXT NOT NULL, program_code TEXT NOT NULL, minutes BIGINT NOT NULL, "
    "sessions BIGINT NOT NULL, PRIMARY KEY (volunteer_id, service_date, program_code))",
    # The key starts with what rankings and bulletins filter on: basis, year, quarter, program.
    "CREATE TABLE IF NOT EXISTS credit_cells (basis TEXT NOT NULL, year INTEGER NOT NULL, "
    "quarter INTEGER NOT NULL, program_code TEXT NOT NULL, unit_id TEXT NOT NULL, "
    "volunteer_id TEXT NOT NULL, minutes BIGINT NOT NULL, sessions BIGINT NOT NULL, "
    "PRIMARY KEY (basis, year, quarter, program_code, unit_id, volunteer_id))",
    # Each unit's minutes, sessions and distinct active volunteers per period, so a ranking
    # reads one row per unit. Year 0 is every year; quarter 0 is the whole year.
    "CREATE TABLE IF NOT EXISTS credit_unit_totals (basis TEXT NOT NULL, year INTEGER NOT NULL, "
    "quarter INTEGER NOT NULL, unit_id TEXT NOT NULL, minutes BIGINT NOT NULL, "
    "sessions BIGINT NOT NULL, volunteers BIGINT NOT NULL, "
    "PRIMARY KEY (basis, year, quarter, unit_id))",
    # Each day a unit has live sessions at activities it organised: with its members' days
    # (credit_days over credit_memberships), how early it may be closed
    # (ReadModels.service_facts). Keyed by unit first.
    "CREATE TABLE IF NOT EXISTS credit_organised_days (unit_id TEXT NOT NULL, "
    "service_date TEXT NOT NULL, minutes BIGINT NOT NULL, sessions BIGINT NOT NULL, "
    "PRIMARY KEY (unit_id, service_date))",
    # A volunteer's sessions credited to a unit in each quarter of a year (year 0: every year,
    # in q1): whether they count among the unit's active volunteers in a period. One text key,
    # "volunteer/basis/unit/year" (ids are the ledger's own, without "/"), so a page reads
    # exactly the rows it changes in one statement on either store.
    "CREATE TABLE IF NOT EXISTS credit_active (active_key TEXT NOT NULL, q1 BIGINT NOT NULL, "
    "q2 BIGINT NOT NULL, q3 BIGINT NOT NULL, q4 BIGINT NOT NULL, PRIMARY KEY (active_key))",
    # While the view fills from empty (projections/filling.py): each session change as a fact.
    "CREATE TABLE IF NOT EXISTS credit_fill (volunteer_id TEXT NOT NULL, "
    "service_date TEXT NOT NULL, program_code TEXT NOT NULL, organiser_unit_id TEXT NOT NULL, "
    "minutes BIGINT NOT NULL, sessions BIGINT NOT NULL)",
    # And each page's sessions per organiser and day, summed in the page: a unit organises
    # many sessions a day, and grouping every staged session again for these few rows cost
    # as much as the cells (bench/rebuild.py at 1M events: 0.5 s of a 10 s rebuild).
    "CREATE TABLE IF NOT EXISTS credit_fill_organised (unit_id TEXT NOT NULL, "
    "service_date TEXT NOT NULL, minutes BIGINT NOT NULL, sessions BIGINT NOT NULL)",
    # At the end of a fill: each volunteer's minutes and sessions per quarter of a year, per
    # basis and unit, from which active rows and unit totals are made without sorting the
    # cells once per statement.
    "CREATE TABLE IF NOT EXISTS credit_fill_active (volunteer_id TEXT NOT NULL, "
    "basis TEXT NOT NULL, unit_id TEXT NOT NULL, year INTEGER NOT NULL, "
    + "".join(f"m{q} BIGINT NOT NULL, " for q in range(1, 5))
    + "".join(f"s{q} BIGINT NOT NULL, " for q in range(1, 5))
    + "PRIMARY KEY (volunteer_id, basis, unit_id, year))",
)

# Each membership as a span of days [effective_on, until); the first also covers the days
# before it, as unit_on() reads a timeline. A staged session joins the span of its day.
def spans_of(where: str = "") -> str:
    """The CTE `spans` of the memberships (those matching `where`, if given)."""
    return ("WITH spans AS (SELECT volunteer_id, unit_id, effective_on, "
            "LEAD(effective_on) OVER (PARTITION BY volunteer_id ORDER BY effective_on) AS until, "
            "ROW_NUMBER() OVER (PARTITION BY volunteer_id ORDER BY effective_on) AS n "
            f"FROM credit_memberships{f' WHERE {where}' if where else ''}) ")


def in_span(day: str) -> str:
    """The condition that a day (a column) falls in the span `s` (the unit it is credited to)."""
    return (f"(s.n = 1 OR {day} >= s.effective_on) "
            f"AND (s.until IS NULL OR {day} < s.until)")


_SPANS = spans_of()
_NONZERO = "HAVING SUM(minutes) <> 0 OR SUM(sessions) <> 0"
_ACTIVE_KEY = "volunteer_id || '/' || basis || '/' || unit_id || '/' || "
_MINUTES = "m1 + m2 + m3 + m4"
_SESSIONS = "s1 + s2 + s3 + s4"
_TOTALS = ("INSERT INTO credit_unit_totals (basis, year, quarter, unit_id, minutes, sessions, "
           "volunteers)")
# The same rows the pages would have written one by one (see _Page), in key order.
SETTLE_SQL = (
    "INSERT INTO credit_days (volunteer_id, service_date, program_code, minutes, sessions) "
    "SELECT volunteer_id, service_date, program_code, SUM(minutes), SUM(sessions) "
    f"FROM credit_fill GROUP BY volunteer_id, service_date, program_code {_NONZERO} "
    "ORDER BY 1, 2, 3",
    "INSERT INTO credit_cells (basis, year, quarter, program_code, unit_id, volunteer_id, "
    f"minutes, sessions) SELECT 'organised', {YEAR_SQL}, {QUARTER_SQL}, program_code, "
    "organiser_unit_id, volunteer_id, SUM(minutes), SUM(sessions) FROM credit_fill "
    f"GROUP BY 2, 3, program_code, organiser_unit_id, volunteer_id {_NONZERO} "
    "ORDER BY 2, 3, 4, 5, 6",
    # The members' cells from the days just made, not from the staged facts: a member's unit
    # is a function of (volunteer, day), so the days' sums give the same cells, from fewer
    # rows (a volunteer's sessions of one day and program are one row), read in volunteer
    # order.
    f"{_SPANS}INSERT INTO credit_cells (basis, year, quarter, program_code, unit_id, "
    f"volunteer_id, minutes, sessions) SELECT 'members', {YEAR_SQL}, {QUARTER_SQL}, "
    "program_code, s.unit_id, f.volunteer_id, SUM(minutes), SUM(sessions) "
    f"FROM credit_days f JOIN spans s ON s.volunteer_id = f.volunteer_id "
    f"AND {in_span('service_date')} "
    f"GROUP BY 2, 3, program_code, s.unit_id, f.volunteer_id {_NONZERO} "
    "ORDER BY 2, 3, 4, 5, 6",
    "INSERT INTO credit_organised_days (unit_id, service_date, minutes, sessions) "
    "SELECT unit_id, service_date, SUM(minutes), SUM(sessions) "
    f"FROM credit_fill_organised GROUP BY unit_id, service_date {_NONZERO} ORDER BY 1, 2",
    "DELETE FROM credit_fill",
    "DELETE FROM credit_fill_organised",
    # Active rows and unit totals are empty while the view fills (they follow the cells).
    # A cell exists only while it holds sessions, so a volunteer counts among a unit's active
    # volunteers in a period exactly when their sessions there are not zero.
    "INSERT INTO credit_fill_active SELECT volunteer_id, basis, unit_id, year, "
    + ", ".join(f"SUM(CASE WHEN quarter = {q} THEN {c} ELSE 0 END)"
                for c in ("minutes", "sessions") for q in range(1, 5))
    + " FROM credit_cells GROUP BY volunteer_id, basis, unit_id, year ORDER BY 1, 2, 3, 4",
    f"INSERT INTO credit_active (active_key, q1, q2, q3, q4) SELECT {_ACTIVE_KEY} "
    f"CAST(year AS TEXT), s1, s2, s3, s4 FROM credit_fill_active WHERE {_SESSIONS} <> 0",
    f"INSERT INTO credit_active (active_key, q1, q2, q3, q4) SELECT {_ACTIVE_KEY} '{ALL}', "
    f"SUM({_SESSIONS}), 0, 0, 0 FROM credit_fill_active GROUP BY volunteer_id, basis, unit_id "
    f"HAVING SUM({_SESSIONS}) <> 0",
    # Each (basis, year, unit) once, then its four quarters and its whole year from that row.
    "WITH g AS (SELECT basis, year, unit_id, "
    + ", ".join(f"SUM(m{q}) AS m{q}, SUM(s{q}) AS s{q}, "
                f"SUM(CASE WHEN s{q} <> 0 THEN 1 ELSE 0 END) AS v{q}" for q in range(1, 5))
    + ", COUNT(*) AS v FROM credit_fill_active GROUP BY basis, year, unit_id) "
    f"{_TOTALS} "
    + " UNION ALL ".join(f"SELECT basis, year, {q}, unit_id, m{q}, s{q}, v{q} FROM g "
                         f"WHERE s{q} <> 0" for q in range(1, 5))
    + f" UNION ALL SELECT basis, year, {ALL}, unit_id, {_MINUTES}, {_SESSIONS}, v FROM g "
    f"WHERE {_SESSIONS} <> 0",
    f"{_TOTALS} SELECT basis, {ALL}, {ALL}, unit_id, SUM({_MINUTES}), SUM({_SESSIONS}), "
    f"COUNT(DISTINCT volunteer_id) FROM credit_fill_active GROUP BY basis, unit_id "
    f"HAVING SUM({_SESSIONS}) <> 0",
    "DELETE FROM credit_fill_active",
)

SESSION_EVENTS = ("ServiceSession.Recorded", "ServiceSession.Corrected", "ServiceSession.Voided")


def unit_on(timeline: list[tuple[str, str]], day: str) -> str:
    """The unit of a membership timeline on a day (the first unit before it starts)."""
    i = bisect_right(timeline, (day, "\uffff"))
    return timeline[max(i - 1, 0)][1]


HANDLED = frozenset({
    "ServiceSession.Corrected",
    "ServiceSession.Recorded",
    "ServiceSession.Voided",
    "Unit.Closed",
    "Unit.Moved",
    "Unit.Registered",
    "Unit.Renamed",
    "Volunteer.Registered",
    "Volunteer.Transferred",
})

class CreditsProjection(TableViews):
    """Minutes credited per (basis, year, quarter, program, unit, volunteer)."""

    name = "credits"
    filling: Filling
    # 10: credit_units.civilized_level, for the directory of units; 11: a fill stages each
    # page's organised days (credit_fill_organised), which a fill begun before lacks
    schema_version = 11
    tables = TABLES
    ddl = DDL


    def __init__(self) -> None:
        self.filling = Filling("credit", "credit_cells", SETTLE_SQL)

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        """Fold a page in memory (memberships loaded once per page) and write the changes."""
        _Page(cur, events, filling=self.filling.active(cur)).fold()


class _Page:
    def __init__(self, cur: ViewCursor, events: Sequence[FeedEvent], filling: bool) -> None:
        self.cur = cur
        self.filling = filling
        self.staged: list[tuple[str, str, str, str, int, int]] = []
        self.staged_days: dict[tuple[str, str], list[int]] = {}  # (organiser, day): sums
        self.events = events
        self.units = Latest("credit_units", "unit_id",
                            ("name", "kind", "parent_id", "closed_on", "civilized_level"))
        self.days = Tally("credit_days", TABLES["credit_days"], ("minutes", "sessions"))
        self.cells = Tally("credit_cells", TABLES["credit_cells"], ("minutes", "sessions"))
        self.organised_days = Tally("credit_organised_days", TABLES["credit_organised_days"],
                                    ("minutes", "sessions"))
        self.timelines: dict[str, list[tuple[str, str]]] = {}
        self.joined: dict[tuple[str, str], str] = {}

    def fold(self) -> None:
        if not self.filling:
            self._load_timelines()
        for e in self.events:
            t = e.type
            if t not in HANDLED:
                continue  # most events never need their JSON decoded here
            d = e.data
            if t == "ServiceSession.Recorded":
                self._credit(d, d["minutes"], d["service_date"], 1)
            elif t == "ServiceSession.Corrected":
                self._credit(d, d["previous_minutes"], d["previous_service_date"], -1)
                self._credit(d, d["minutes"], d["service_date"], 1)
            elif t == "ServiceSession.Voided":
                self._credit(d, d["minutes"], d["service_date"], -1)
            elif t == "Volunteer.Registered":
                self.timelines[e.originator_id] = [(d["registered_on"], d["home_unit_id"])]
                self.joined[(e.originator_id, d["registered_on"])] = d["home_unit_id"]
            elif t == "Volunteer.Transferred":
                self._transfer(e.originator_id, d["effective_on"], d["to_unit_id"])
            elif t == "Unit.Registered":
                self.units.create(e.originator_id, name=d["name"], kind=d["kind"],
                                  parent_id=d["parent_id"],
                                  civilized_level=d["civilized_level"])
            elif t == "Unit.Renamed":
                self.units.update(e.originator_id, name=d["name"])
            elif t == "Unit.Moved":
                self.units.update(e.originator_id, parent_id=d["parent_id"])
            elif t == "Unit.Closed":
                self.units.update(e.originator_id, closed_on=d["closed_on"])
        self.units.write(self.cur)
        self.cur.executemany(
            "INSERT INTO credit_memberships (volunteer_id, effective_on, unit_id) VALUES (?, ?, ?) "
            "ON CONFLICT (volunteer_id, effective_on) DO UPDATE SET unit_id = excluded.unit_id",
            [(v, day, unit) for (v, day), unit in self.joined.items()])
        if self.filling:
            self.cur.executemany(
                "INSERT INTO credit_fill (volunteer_id, service_date, program_code, "
                "organiser_unit_id, minutes, sessions) VALUES (?, ?, ?, ?, ?, ?)", self.staged)
            self.cur.executemany(
                "INSERT INTO credit_fill_organised (unit_id, service_date, minutes, sessions) "
                "VALUES (?, ?, ?, ?)", [(*k, *v) for k, v in self.staged_days.items()])
            return
        self.days.write(self.cur)
        self._unit_totals()
        self.cells.write(self.cur)
        self.organised_days.write(self.cur)

    def _unit_totals(self) -> None:
        """Carry the page's net cell changes into unit totals per period, counting a volunteer
        in or out of a unit's active volunteers when their sessions there become (non)zero."""
        by_quarter: dict[tuple[str, int, int, str], list[int]] = {}
        changed: dict[str, list[int]] = {}
        whole_of: dict[str, tuple[str, int, str]] = {}
        for (basis, year, quarter, _, unit, vid), (minutes, sessions) in self.cells.changes.items():
            if not (minutes or sessions):
                continue
            sums = by_quarter.get((basis, year, quarter, unit))
            if sums is None:
                by_quarter[(basis, year, quarter, unit)] = [minutes, sessions]
            else:
                sums[0] += minutes
                sums[1] += sessions
            if sessions:
                for period, slot in ((year, quarter - 1), (ALL, 0)):
                    key = f"{vid}/{basis}/{unit}/{period}"
                    counts = changed.get(key)
                    if counts is None:
                        counts = changed[key] = [0, 0, 0, 0]
                        whole_of[key] = (basis, period, unit)
                    counts[slot] += sessions
        totals = Tally("credit_unit_totals", TABLES["credit_unit_totals"],
                       ("minutes", "sessions", "volunteers"))
        for (basis, year, quarter, unit), (minutes, sessions) in by_quarter.items():
            for period in ((basis, year, quarter, unit), (basis, year, ALL, unit),
                           (basis, ALL, ALL, unit)):
                totals.add(period, minutes, sessions, 0)
        before = self._active_before(changed) if changed else {}
        for key, change in changed.items():
            basis, year, unit = whole_of[key]
            was = before.get(key, NONE_ACTIVE)
            now = [a + b for a, b in zip(was, change, strict=True)]
            if year == ALL:
                whole = (basis, ALL, ALL, unit)
            else:
                whole = (basis, year, ALL, unit)
                for quarter in range(1, 5):
                    if (now[quarter - 1] > 0) != (was[quarter - 1] > 0):
                        totals.add((basis, year, quarter, unit), 0, 0,
                                   1 if now[quarter - 1] > 0 else -1)
            if any(now) != any(was):
                totals.add(whole, 0, 0, 1 if any(now) else -1)
        active = Tally("credit_active", TABLES["credit_active"], ("q1", "q2", "q3", "q4"))
        active.changes = {(key,): change for key, change in changed.items()}
        active.lowered = {(key,) for key, change in changed.items() if min(change) < 0}
        active.write(self.cur)
        totals.write(self.cur)

    def _active_before(self, keys: Iterable[str]) -> dict[str, Sequence[int]]:
        """The stored active rows at some keys."""
        condition, values = self.cur.one_of("active_key", sorted(keys))
        rows = self.cur.execute(
            f"SELECT active_key, q1, q2, q3, q4 FROM credit_active WHERE {condition}",
            (values,)).fetchall()
        return {key: counts for key, *counts in rows}

    def _load_timelines(self) -> None:
        wanted = sorted({e.data["volunteer_id"] for e in self.events if e.type in SESSION_EVENTS}
                        | {e.originator_id for e in self.events
                           if e.type == "Volunteer.Transferred"})
        if not wanted:
            return
        condition, values = self.cur.one_of("volunteer_id", wanted)
        rows = self.cur.execute(
            "SELECT volunteer_id, effective_on, unit_id FROM credit_memberships "
            f"WHERE {condition} ORDER BY volunteer_id, effective_on", (values,)).fetchall()
        for vid, day, unit in rows:
            self.timelines.setdefault(vid, []).append((day, unit))

    def _credit(self, d: dict[str, Any], minutes: int, day: str, sign: int) -> None:
        vid, program = d["volunteer_id"], d["program_code"]
        if self.filling:
            organiser = d["organiser_unit_id"]
            self.staged.append((vid, day, program, organiser, sign * minutes, sign))
            sums = self.staged_days.get((organiser, day))
            if sums is None:
                self.staged_days[(organiser, day)] = [sign * minutes, sign]
            else:
                sums[0] += sign * minutes
                sums[1] += sign
            return
        year, quarter = year_quarter(day)
        self.days.add((vid, day, program), sign * minutes, sign)
        organiser = d["organiser_unit_id"]
        self.cells.add(("organised", year, quarter, program, organiser, vid),
                       sign * minutes, sign)
        self.organised_days.add((organiser, day), sign * minutes, sign)
        timeline = self.timelines.get(vid)
        if timeline:
            self.cells.add(("members", year, quarter, program, unit_on(timeline, day), vid),
                           sign * minutes, sign)

    def _transfer(self, vid: str, start: str, to_unit: str) -> None:
        if self.filling:  # cells are made at the end, from the final memberships
            self.joined[(vid, start)] = to_unit
            return
        timeline = self.timelines.setdefault(vid, [])
        if not timeline:
            timeline.append((start, to_unit))
            self.joined[(vid, start)] = to_unit
            return
        from_unit = unit_on(timeline, start)
        later = [day for day, _ in timeline if day > start]
        end = later[0] if later else None
        timeline[:] = sorted([m for m in timeline if m[0] != start] + [(start, to_unit)])
        self.joined[(vid, start)] = to_unit
        if from_unit == to_unit:
            return
        for (day, program), (minutes, sessions) in self._days_between(vid, start, end).items():
            year, quarter = year_quarter(day)
            self.cells.add(("members", year, quarter, program, from_unit, vid), -minutes, -sessions)
            self.cells.add(("members", year, quarter, program, to_unit, vid), minutes, sessions)

    def _days_between(self, vid: str, start: str,
                      end: str | None) -> dict[tuple[str, str], list[int]]:
        """A volunteer's minutes and sessions per (day, program) in [start, end), stored or not."""
        sql = ("SELECT service_date, program_code, minutes, sessions FROM credit_days "
               "WHERE volunteer_id = ? AND service_date >= ?")
        params: list[Any] = [vid, start]
        if end is not None:
            sql += " AND service_date < ?"
            params.append(end)
        found: dict[tuple[str, str], list[int]] = {
            (day, program): [int(m), int(s)]
            for day, program, m, s in self.cur.execute(sql, params).fetchall()}
        for (v, day, program), (m, s) in self.days.changes.items():
            if v == vid and day >= start and (end is None or day < end):
                total = found.setdefault((day, program), [0, 0])
                total[0] += m
                total[1] += s
        return {k: v for k, v in found.items() if any(v)}
