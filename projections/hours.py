"""Volunteer hours: minutes by category, program, year and quarter, sessions, trainings, stars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.catalogue import PROGRAMS, star_level
from ledger.errors import ViewsBehind
from projections.feed import FeedEvent
from projections.filling import QUARTER_SQL, YEAR_SQL, Filling
from projections.store import ViewCursor
from projections.tally import Latest, TableViews, Tally

TABLES: dict[str, tuple[str, ...]] = {
    "hours_volunteers": ("volunteer_id",),
    "hours_cells": ("volunteer_id", "year", "quarter", "program_code"),
    "hours_days": ("volunteer_id", "service_date"),
    "hours_voided": ("volunteer_id", "year"),
    "hours_trainings": ("training_id",),
    "hours_filling": (),
    "hours_fill": (),
}

DDL = (
    "CREATE TABLE IF NOT EXISTS hours_volunteers (volunteer_id TEXT PRIMARY KEY, name TEXT, "
    "registered_on TEXT, deregistered_on TEXT, volunteer_number TEXT NOT NULL, "
    "home_unit_id TEXT NOT NULL)",
    # The directory of volunteers (GET /v1/volunteers) pages in volunteer-number order.
    "CREATE INDEX IF NOT EXISTS hours_volunteers_by_number "
    "ON hours_volunteers (volunteer_number, volunteer_id)",
    "CREATE TABLE IF NOT EXISTS hours_cells (volunteer_id TEXT NOT NULL, year INTEGER NOT NULL, "
    "quarter INTEGER NOT NULL, program_code TEXT NOT NULL, minutes BIGINT NOT NULL, "
    "sessions BIGINT NOT NULL, PRIMARY KEY (volunteer_id, year, quarter, program_code))",
    "CREATE TABLE IF NOT EXISTS hours_days (volunteer_id TEXT NOT NULL, "
    "service_date TEXT NOT NULL, sessions BIGINT NOT NULL, "
    "PRIMARY KEY (volunteer_id, service_date))",
    "CREATE TABLE IF NOT EXISTS hours_voided (volunteer_id TEXT NOT NULL, year INTEGER NOT NULL, "
    "sessions BIGINT NOT NULL, PRIMARY KEY (volunteer_id, year))",
    "CREATE TABLE IF NOT EXISTS hours_trainings (training_id TEXT PRIMARY KEY, "
    "volunteer_id TEXT NOT NULL, completed_on TEXT NOT NULL, minutes BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS hours_trainings_by_volunteer "
    "ON hours_trainings (volunteer_id, completed_on)",
    # While the view fills from empty (projections/filling.py): each session change as a fact.
    "CREATE TABLE IF NOT EXISTS hours_fill (volunteer_id TEXT NOT NULL, "
    "service_date TEXT NOT NULL, program_code TEXT NOT NULL, minutes BIGINT NOT NULL, "
    "sessions BIGINT NOT NULL)",
)

# The rows the pages would have written one by one, from the staged facts, in key order (a
# B-tree takes rows in its own order much faster than at random).
SETTLE_SQL = (
    "INSERT INTO hours_cells (volunteer_id, year, quarter, program_code, minutes, sessions) "
    f"SELECT volunteer_id, {YEAR_SQL}, {QUARTER_SQL}, program_code, SUM(minutes), "
    "SUM(sessions) FROM hours_fill GROUP BY volunteer_id, 2, 3, program_code "
    "HAVING SUM(minutes) <> 0 OR SUM(sessions) <> 0 ORDER BY 1, 2, 3, 4",
    "INSERT INTO hours_days (volunteer_id, service_date, sessions) "
    "SELECT volunteer_id, service_date, SUM(sessions) FROM hours_fill "
    "GROUP BY volunteer_id, service_date HAVING SUM(sessions) <> 0 ORDER BY 1, 2",
    "DELETE FROM hours_fill",
)


def year_quarter(service_date: str) -> tuple[int, int]:
    """The year and quarter of an ISO service date (already in district time)."""
    return int(service_date[:4]), (int(service_date[5:7]) - 1) // 3 + 1


HANDLED = frozenset({
    "ServiceSession.Corrected",
    "ServiceSession.Recorded",
    "ServiceSession.Voided",
    "Volunteer.Deregistered",
    "Volunteer.PersonalDataUpdated",
    "Volunteer.Registered",
    "Volunteer.TrainingCompleted",
})

class HoursProjection(TableViews):
    """Per volunteer: service minutes in cells of (year, quarter, program), days, trainings."""

    name = "hours"
    filling: Filling
    # 3: hours_volunteers.volunteer_number, for the directory; 4: its home_unit_id (the unit
    # of registration, as GET /v1/volunteers/{id} names it; bb36 F5)
    schema_version = 4
    tables = TABLES
    ddl = DDL

    def __init__(self) -> None:
        self.filling = Filling("hours", "hours_cells", SETTLE_SQL)

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        """Fold a page of events in memory and write the net changes."""
        volunteers = Latest("hours_volunteers", "volunteer_id",
                            ("name", "registered_on", "deregistered_on", "volunteer_number",
                             "home_unit_id"))
        trainings = Latest("hours_trainings", "training_id",
                           ("volunteer_id", "completed_on", "minutes"))
        cells = Tally("hours_cells", TABLES["hours_cells"], ("minutes", "sessions"))
        days = Tally("hours_days", TABLES["hours_days"], ("sessions",))
        voided = Tally("hours_voided", TABLES["hours_voided"], ("sessions",))
        filling = self.filling.active(cur)
        staged: list[tuple[str, str, str, int, int]] = []

        def credit(d: dict[str, Any], minutes: int, day: str, sign: int) -> None:
            if filling:
                staged.append((d["volunteer_id"], day, d["program_code"], sign * minutes, sign))
                return
            year, quarter = year_quarter(day)
            vid = d["volunteer_id"]
            cells.add((vid, year, quarter, d["program_code"]), sign * minutes, sign)
            days.add((vid, day), sign)

        for e in events:
            t = e.type
            if t not in HANDLED:
                continue  # most events never need their JSON decoded here
            d = e.data
            if t == "ServiceSession.Recorded":
                credit(d, d["minutes"], d["service_date"], 1)
            elif t == "ServiceSession.Corrected":
                credit(d, d["previous_minutes"], d["previous_service_date"], -1)
                credit(d, d["minutes"], d["service_date"], 1)
            elif t == "ServiceSession.Voided":
                credit(d, d["minutes"], d["service_date"], -1)
                voided.add((d["volunteer_id"], year_quarter(d["service_date"])[0]), 1)
            elif t == "Volunteer.Registered":
                volunteers.create(e.originator_id, name=d["name"],
                                  registered_on=d["registered_on"],
                                  volunteer_number=d["volunteer_number"],
                                  home_unit_id=d["home_unit_id"])
            elif t == "Volunteer.PersonalDataUpdated" and "name" in d["changes"]:
                volunteers.update(e.originator_id, name=d["changes"]["name"])
            elif t == "Volunteer.Deregistered":
                volunteers.update(e.originator_id, deregistered_on=d["deregistered_on"])
            elif t == "Volunteer.TrainingCompleted":
                training = d["training"]
                trainings.create(training["id"], volunteer_id=e.originator_id,
                                 completed_on=training["completed_on"],
                                 minutes=training["minutes"])
        for table in (volunteers, trainings, cells, days, voided):
            table.write(cur)
        cur.executemany("INSERT INTO hours_fill (volunteer_id, service_date, program_code, "
                        "minutes, sessions) VALUES (?, ?, ?, ?, ?)", staged)


def hours(minutes: int) -> float:
    """Minutes as hours, rounded down to the hundredth: as eligibility shows them, and never
    more than was served (5,999 minutes are 99.98 h, short of the first star's 100 h, not
    a rounded 100.0)."""
    return (minutes * 100 // 60) / 100


# One statement answers a volunteer's hours, so PostgreSQL answers in one round trip:
# their cells, last service day, training minutes, whether the view knows them, its position.
HOURS_SQL = (
    "SELECT 'c', year, quarter, program_code, minutes, sessions FROM hours_cells "
    "WHERE volunteer_id = ? "
    "UNION ALL SELECT 'd', NULL, NULL, MAX(service_date), NULL, NULL FROM hours_days "
    "WHERE volunteer_id = ? "
    "UNION ALL SELECT 't', NULL, NULL, NULL, COALESCE(SUM(minutes), 0), NULL "
    "FROM hours_trainings WHERE volunteer_id = ? "
    "UNION ALL SELECT 'v', NULL, NULL, NULL, NULL, NULL FROM hours_volunteers "
    "WHERE volunteer_id = ? "
    "UNION ALL SELECT 'p', NULL, NULL, NULL, position, NULL FROM projection_positions "
    "WHERE name = 'hours' "
    "UNION ALL SELECT 'f', NULL, NULL, NULL, NULL, NULL FROM hours_filling"
)


def volunteer_hours(cur: ViewCursor, volunteer_id: str) -> dict[str, Any] | None:
    """One volunteer's hours as the view holds them, or None if the view does not know them."""
    return hours_from_rows(volunteer_id, cur.execute(HOURS_SQL, (volunteer_id,) * 4).fetchall())


def hours_from_rows(volunteer_id: str, rows: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
    """The hours answer from the rows of HOURS_SQL (503 while the view is being filled from
    empty: its cells are staged, and it would answer zeros)."""
    if any(row[0] == "f" for row in rows):
        raise ViewsBehind("the hours view is being filled from empty (a rebuild or a first "
                          "start); try again shortly")
    if not any(row[0] == "v" for row in rows):
        return None
    by_program = dict.fromkeys(PROGRAMS, 0)
    by_year: dict[str, int] = {}
    by_quarter: dict[str, int] = {}
    sessions = training_minutes = position = 0
    last = None
    for kind, year, quarter, text, minutes, count in sorted(
            rows, key=lambda r: (r[0], r[1] or 0, r[2] or 0)):
        if kind == "c":
            by_program[text] = by_program.get(text, 0) + int(minutes)
            by_year[str(year)] = by_year.get(str(year), 0) + int(minutes)
            label = f"{year}-Q{quarter}"
            by_quarter[label] = by_quarter.get(label, 0) + int(minutes)
            sessions += int(count)
        elif kind == "d":
            last = text
        elif kind == "t":
            training_minutes = int(minutes or 0)
        elif kind == "p":
            position = int(minutes)
    by_category = {"A": 0, "B": 0, "C": 0}
    for program, minutes in by_program.items():
        by_category[program[0]] += minutes
    total = sum(by_program.values())
    return {
        "volunteer_id": volunteer_id,
        "total_minutes": total,
        "total_hours": hours(total),
        "star_level": star_level(total),
        "by_category": by_category,
        "by_program": by_program,
        "by_year": by_year,
        "by_quarter": by_quarter,
        "sessions": sessions,
        "training_minutes": training_minutes,
        "training_hours": hours(training_minutes),
        "last_service_date": last,
        "position": position,
    }
