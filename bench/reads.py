"""Reads from the views beside the same answers by GROUP BY over a plain table of sessions.

The plain table is what a CRUD volunteer system keeps: one row per session with the member unit
already resolved (in the baseline's favour), indexed on volunteer and date, in the same store.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.events import all_events
from ledger import Ledger, Settings, star_level
from projections.hours import volunteer_hours as view_hours
from projections.rankings import unit_rankings as view_rankings
from projections.store import ViewCursor, ViewStore

KINDS = ("community", "school", "organisation", "department", "subdistrict", "town")
PLAIN_TABLES = ("bench_plain_sessions", "bench_plain_units")
PLAIN_DDL = (
    "CREATE TABLE bench_plain_units (unit_id TEXT PRIMARY KEY, name TEXT, kind TEXT)",
    "CREATE TABLE bench_plain_sessions (session_id TEXT PRIMARY KEY, volunteer_id TEXT, "
    "member_unit_id TEXT, organiser_unit_id TEXT, program_code TEXT, service_date TEXT, "
    "minutes INTEGER)",
    "CREATE INDEX bench_plain_by_volunteer ON bench_plain_sessions (volunteer_id)",
    "CREATE INDEX bench_plain_by_date ON bench_plain_sessions (service_date)",
)


def load_plain(ledger: Ledger, store: ViewStore, chunk: int = 10_000) -> list[str]:
    """Fill the plain tables from the stored events; returns the volunteer ids.

    Two passes, so that memory stays flat at any size: the first learns each volunteer's
    memberships (a transfer may be recorded after sessions it back-dates), the second streams
    the sessions into the table a chunk at a time with the member unit already resolved.
    """
    units: list[tuple[str, str, str]] = []
    memberships: dict[str, list[tuple[str, str]]] = {}
    for e in all_events(ledger.recorder):
        d = e.data
        if e.type == "Unit.Registered":
            units.append((e.originator_id, d["name"], d["kind"]))
        elif e.type == "Volunteer.Registered":
            memberships[e.originator_id] = [(d["registered_on"], d["home_unit_id"])]
        elif e.type == "Volunteer.Transferred":
            memberships[e.originator_id].append((d["effective_on"], d["to_unit_id"]))
    spans = {vid: sorted(found) for vid, found in memberships.items()}

    def member(vid: str, day: str) -> str:
        unit_id = spans[vid][0][1]
        for effective_on, to_unit in spans[vid]:
            if effective_on <= day:
                unit_id = to_unit
        return unit_id

    insert = "INSERT INTO bench_plain_sessions VALUES (?, ?, ?, ?, ?, ?, ?)"
    with store.transaction() as cur:
        drop_plain(cur)  # an existing store measured again (--existing) may hold them
        for ddl in PLAIN_DDL:
            cur.execute(ddl)
        cur.executemany("INSERT INTO bench_plain_units VALUES (?, ?, ?)", units)
        rows: list[tuple[str, str, str, str, str, str, int]] = []
        for e in all_events(ledger.recorder):
            if e.type == "ServiceSession.Recorded":
                d = e.data
                rows.append((e.originator_id, d["volunteer_id"],
                             member(d["volunteer_id"], d["service_date"]),
                             d["organiser_unit_id"], d["program_code"], d["service_date"],
                             d["minutes"]))
                if len(rows) == chunk:
                    cur.executemany(insert, rows)
                    rows = []
        cur.executemany(insert, rows)
    if store.postgres:
        with store.transaction() as cur:
            cur.execute("ANALYZE bench_plain_sessions")
    return sorted(memberships)


def drop_plain(cur: ViewCursor) -> None:
    for table in PLAIN_TABLES:
        cur.execute(f"DROP TABLE IF EXISTS {table}")


def plain_hours(cur: ViewCursor, volunteer_id: str) -> dict[str, Any]:
    """A volunteer's hours by GROUP BY over the plain table."""
    by_program: dict[str, int] = {}
    by_year: dict[str, int] = {}
    for program, year, minutes in cur.execute(
            "SELECT program_code, substr(service_date, 1, 4), SUM(minutes) "
            "FROM bench_plain_sessions WHERE volunteer_id = ? GROUP BY 1, 2",
            (volunteer_id,)).fetchall():
        by_program[program] = by_program.get(program, 0) + int(minutes)
        by_year[year] = by_year.get(year, 0) + int(minutes)
    total = sum(by_program.values())
    by_category = {c: sum(m for p, m in by_program.items() if p[0] == c) for c in "ABC"}
    return {"volunteer_id": volunteer_id, "total_minutes": total, "star_level": star_level(total),
            "by_category": by_category, "by_program": by_program, "by_year": by_year}


def plain_rankings(cur: ViewCursor, kind: str, basis: str, year: int) -> list[dict[str, Any]]:
    """Units of a kind ranked by GROUP BY over the plain table (ties share a rank)."""
    column = "member_unit_id" if basis == "members" else "organiser_unit_id"
    rows = cur.execute(
        "SELECT u.unit_id, u.name, COALESCE(SUM(s.minutes), 0), COUNT(DISTINCT s.volunteer_id) "
        f"FROM bench_plain_units u LEFT JOIN bench_plain_sessions s ON s.{column} = u.unit_id "
        "AND s.service_date BETWEEN ? AND ? WHERE u.kind = ? GROUP BY u.unit_id, u.name "
        "ORDER BY 3 DESC", (f"{year}-01-01", f"{year}-12-31", kind)).fetchall()
    items, rank, previous = [], 0, None
    for n, (uid, name, minutes, volunteers) in enumerate(rows, 1):
        if minutes != previous:
            rank, previous = n, minutes
        items.append({"rank": rank, "unit_id": uid, "name": name, "total_minutes": int(minutes),
                      "volunteers": int(volunteers)})
    return items


def _timed(calls: list[Callable[[], Any]]) -> tuple[dict[str, float], list[Any]]:
    times, answers = [], []
    for call in calls:
        began = time.perf_counter()
        answers.append(call())
        times.append((time.perf_counter() - began) * 1000)
    ordered = sorted(times)
    return {"calls": len(times), "mean_ms": round(statistics.fmean(times), 3),
            "p50_ms": round(ordered[len(ordered) // 2], 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "per_s": round(len(times) / (sum(times) / 1000), 1)}, answers


def reads(url: str, volunteers: int = 500, rounds: int = 3) -> dict[str, Any]:
    """Volunteer-hours and unit-ranking reads: views vs GROUP BY, with answers compared."""
    from projections.models import ReadModels

    ledger = Ledger(Settings(database_url=url))
    models = ReadModels(ledger)
    store = ViewStore(ledger.settings.store())
    try:
        models.catch_up()
        everyone = load_plain(ledger, store)
        ids = random.Random(0).sample(everyone, min(volunteers, len(everyone)))

        def plain(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
            def call() -> Any:
                with store.reading() as cur:
                    return fn(cur, *args)
            return call

        cases = [(k, b) for k in KINDS for b in ("members", "organised")] * rounds
        # The views' figures are cold: computed from the tables on every call. What the API
        # answers is shown apart: hours as one statement through the store's query path,
        # rankings remembered per view position.
        view_h, hv = _timed([plain(view_hours, v) for v in ids])
        plain_h, hp = _timed([plain(plain_hours, v) for v in ids])
        view_r, rv = _timed([plain(view_rankings, k, b, 2017) for k, b in cases])
        plain_r, rp = _timed([plain(plain_rankings, k, b, 2017) for k, b in cases])
        remembered_h, _ = _timed([partial(models.volunteer_hours, v) for v in ids * 2])
        remembered_r, _ = _timed([partial(models.unit_rankings, k, b, 2017) for k, b in cases])
    finally:
        with store.transaction() as cur:  # leave the store as it was
            drop_plain(cur)
        store.close()
        models.close()
        ledger.close()
    hours_match = all(a is not None and a["total_minutes"] == b["total_minutes"]
                      for a, b in zip(hv, hp, strict=True))
    rank_match = all({i["unit_id"]: i["total_minutes"] for i in a}
                     == {i["unit_id"]: i["total_minutes"] for i in b}
                     and {i["unit_id"]: i["volunteers"] for i in a}
                     == {i["unit_id"]: i["volunteers"] for i in b}
                     for a, b in zip(rv, rp, strict=True))
    return {"hours_views": view_h, "hours_plain": plain_h, "hours_match": hours_match,
            "rankings_views": view_r, "rankings_plain": plain_r, "rankings_match": rank_match,
            "hours_remembered": remembered_h, "rankings_remembered": remembered_r}
