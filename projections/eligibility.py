"""Award eligibility, evaluated when asked from the views and the award rules in force.

Each criterion present in the rules is checked; `actual` is in the unit of `required`. Hours
are compared exactly (whole minutes against the required hours as written: 249 minutes reach
4.15 h) and shown rounded down to the hundredth, or to as many decimals as the requirement
has: a shown `actual` reaches the shown `required` exactly when the criterion passed.

A volunteer's star level, training and registered days are taken as of 31 December of the
award year (the whole of it: registered days count the day of registration and 31 December
itself); the candidates for a volunteer award are the volunteers registered on 31 December of
the year. One who left during the year is not (bb11, bb16: as of 31 December they are no longer
a volunteer), nor one who registers after it. Best organisation counts
activities the organisation organised; best community counts its members' service (the
`members` basis); best project counts each program's sessions in the year.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

from ledger.awards import RECIPIENT_KIND
from ledger.catalogue import PROGRAMS, AwardKind, star_level
from ledger.commendation import award_kind
from ledger.errors import NotFound
from projections.credits import ALL
from projections.store import ViewCursor

Facts = dict[str, Any]
Check = Callable[[Facts, Any], tuple[Any, bool]]


def _hours_check(minutes: int, per: int, required: Any) -> tuple[float, bool]:
    """(actual, passed) for `minutes / per` minutes (a volunteer's, or a unit's per
    volunteer) against a required number of hours.

    The requirement is taken as written in the rules (its shortest decimal form: 4.15 is 83/20,
    not the binary float whose sixty-fold, 249.00000000000003, 249 minutes would miss). The
    actual is rounded down on the requirement's grid (hundredths, or finer when the
    requirement is finer), so it reads as reaching the requirement exactly when it does. Both
    are worked out in whole numbers: hours = minutes / (60 · per).
    """
    scale, needed = _grid(required)
    return (minutes * scale // (60 * per) / scale,
            minutes * needed.denominator >= 60 * per * needed.numerator)


@lru_cache(maxsize=1024)
def _grid(required: Any) -> tuple[int, Fraction]:
    """The decimal grid of a requirement as written, and its exact value (worked out once per
    requirement, not once per candidate: a list has tens of thousands)."""
    written = Decimal(str(required))
    return 10 ** max(2, -int(written.as_tuple().exponent)), Fraction(written)


def _at_least(fact: str) -> Check:
    return lambda facts, required: (facts[fact], facts[fact] >= required)


def _hours_at_least(fact: str) -> Check:
    return lambda facts, required: _hours_check(facts[fact], 1, required)


def _flag(fact: str) -> Check:
    return lambda facts, required: (facts[fact], bool(facts[fact]) or not required)


def _clear_years(facts: Facts, required: Any) -> tuple[Any, bool]:
    # How many of the N previous years in a row (counting back) passed without this award.
    granted: set[int] = facts["granted_years"]
    year, clear = facts["year"], 0
    while clear < required and (year - clear - 1) not in granted:
        clear += 1
    return clear, clear >= required


def _per_volunteer(facts: Facts, required: Any) -> tuple[Any, bool]:
    volunteers = facts["volunteers"]
    return _hours_check(facts["minutes"] if volunteers else 0, volunteers or 1, required)


CHECKS: dict[str, Check] = {
    "min_hours_in_year": _hours_at_least("minutes"),
    "min_star_level": _at_least("star_level"),
    "training_required": _flag("trained"),
    "min_registered_days": _at_least("registered_days"),
    "no_voided_sessions": _flag("no_voided"),
    "not_awarded_in_previous_years": _clear_years,
    "insurance_required": _flag("insured"),
    "min_active_volunteers": _at_least("volunteers"),
    "min_volunteers": _at_least("volunteers"),
    "min_sessions": _at_least("sessions"),
    "min_hours_per_volunteer": _per_volunteer,
}


def eligibility(cur: ViewCursor, award: str, year: int,
                candidate_id: str | None = None) -> dict[str, Any] | None:
    """Who is eligible for an award in a year, and why; None when no rules are published."""
    kind = award_kind(award)
    row = cur.execute("SELECT version, criteria FROM award_rules WHERE award = ? AND year = ?",
                      (kind.value, year)).fetchone()
    if row is None:
        return None
    version, criteria = int(row[0]), json.loads(row[1])
    recipient = RECIPIENT_KIND[kind]
    if recipient == "volunteer":
        candidates = _volunteers(cur, kind, year, candidate_id)
    elif recipient == "program":
        candidates = _programs(cur, year)
    else:
        basis = "members" if recipient == "community" else "organised"
        candidates = _units(cur, recipient, basis, year)
    if candidate_id is not None:
        if candidate_id not in candidates:
            raise NotFound(f"{candidate_id!r} is not a candidate for {kind.value} {year}")
        candidates = {candidate_id: candidates[candidate_id]}
    items = []
    for cid in sorted(candidates):
        facts = candidates[cid]
        results = []
        for name, required in criteria.items():
            actual, passed = CHECKS[name](facts, required)
            results.append({"name": name, "required": required, "actual": actual,
                            "passed": passed})
        items.append({"candidate_id": cid, "name": facts["name"],
                      "eligible": all(r["passed"] for r in results), "criteria": results})
    return {"award": kind.value, "year": year, "rules_version": version, "items": items}


def _sums(cur: ViewCursor, sql: str, params: list[Any]) -> dict[str, int]:
    return {k: int(v) for k, v in cur.execute(sql, params).fetchall()}


def _volunteers(cur: ViewCursor, kind: AwardKind, year: int,
                only: str | None) -> dict[str, Facts]:
    end, after = date(year, 12, 31), date(year + 1, 1, 1)
    one, arg = (" AND volunteer_id = ?", [only]) if only is not None else ("", [])
    # Registered on 31 December: a deregistration takes effect on its day (no service is
    # accepted from then on), so one on 31 December leaves no candidate.
    people = cur.execute(
        "SELECT volunteer_id, name, registered_on FROM hours_volunteers "
        f"WHERE registered_on <= ? AND (deregistered_on IS NULL OR deregistered_on > ?){one}",
        [end.isoformat(), end.isoformat(), *arg]).fetchall()
    # The year's minutes and those to its end (the star level) in one pass over the cells.
    in_year, to_date = {}, {}
    for vid, year_minutes, all_minutes in cur.execute(
            "SELECT volunteer_id, SUM(CASE WHEN year = ? THEN minutes ELSE 0 END), "
            f"SUM(minutes) FROM hours_cells WHERE year <= ?{one} GROUP BY volunteer_id",
            [year, year, *arg]).fetchall():
        in_year[vid], to_date[vid] = int(year_minutes), int(all_minutes)
    voided = _sums(cur, f"SELECT volunteer_id, sessions FROM hours_voided WHERE year = ?{one}",
                   [year, *arg])
    trained = {r[0] for r in cur.execute(
        f"SELECT DISTINCT volunteer_id FROM hours_trainings WHERE completed_on <= ?{one}",
        [end.isoformat(), *arg]).fetchall()}
    insured = {r[0] for r in cur.execute(
        f"SELECT volunteer_id FROM award_insurance WHERE year = ?{one}", [year, *arg]).fetchall()}
    granted: dict[str, set[int]] = {}
    for rid, y in cur.execute("SELECT recipient_id, year FROM award_grants WHERE award = ? "
                              "AND live = 1 AND year < ?", (kind.value, year)).fetchall():
        granted.setdefault(rid, set()).add(int(y))
    return {
        vid: {
            "name": name, "year": year, "minutes": in_year.get(vid, 0),
            "star_level": star_level(to_date.get(vid, 0)), "trained": vid in trained,
            # The days on which they were registered, up to and including 31 December.
            "registered_days": (after - date.fromisoformat(registered_on)).days,
            "no_voided": voided.get(vid, 0) == 0, "insured": vid in insured,
            "granted_years": granted.get(vid, set()),
        }
        for vid, name, registered_on in people
    }


def _units(cur: ViewCursor, unit_kind: str, basis: str, year: int) -> dict[str, Facts]:
    rows = cur.execute(
        "SELECT unit_id, minutes, volunteers FROM credit_unit_totals "
        "WHERE basis = ? AND year = ? AND quarter = ?", (basis, year, ALL)).fetchall()
    totals = {uid: (int(m), int(v)) for uid, m, v in rows}
    # Open on at least one day of the year (a unit closed on 1 January was open on none).
    units = cur.execute("SELECT unit_id, name FROM credit_units WHERE kind = ? "
                        "AND (closed_on IS NULL OR closed_on > ?)",
                        (unit_kind, date(year, 1, 1).isoformat())).fetchall()
    return {
        uid: {"name": name, "minutes": totals.get(uid, (0, 0))[0],
              "volunteers": totals.get(uid, (0, 0))[1]}
        for uid, name in units
    }


def _programs(cur: ViewCursor, year: int) -> dict[str, Facts]:
    rows = cur.execute(
        "SELECT program_code, SUM(minutes), SUM(sessions), COUNT(DISTINCT volunteer_id) "
        "FROM credit_cells WHERE basis = 'organised' AND year = ? GROUP BY program_code",
        (year,)).fetchall()
    totals = {code: (int(m), int(s), int(v)) for code, m, s, v in rows}
    return {
        code: {"name": program.name_zh, "minutes": totals.get(code, (0, 0, 0))[0],
               "sessions": totals.get(code, (0, 0, 0))[1],
               "volunteers": totals.get(code, (0, 0, 0))[2]}
        for code, program in PROGRAMS.items()
    }

