"""Quarterly bulletins: per unit, volunteers, minutes and sessions of one program in a quarter."""

from __future__ import annotations

from typing import Any

from ledger.base import check_program
from projections.rankings import period_filter, units_of
from projections.store import ViewCursor


def bulletin(cur: ViewCursor, year: int, quarter: int, program: str = "B6",
             basis: str = "organised") -> list[dict[str, Any]]:
    """Units with service in a program (B6 by default) and quarter, busiest first."""
    check_program(program)
    where, params = period_filter(basis, year, quarter)
    rows = cur.execute(
        "SELECT unit_id, SUM(minutes), SUM(sessions), COUNT(DISTINCT volunteer_id) "
        f"FROM credit_cells WHERE {where} AND program_code = ? GROUP BY unit_id",
        [*params, program]).fetchall()
    units = units_of(cur)
    items = [
        {
            "unit_id": uid, "name": units.get(uid, (uid, "", None))[0],
            "kind": units.get(uid, ("", "", None))[1], "total_minutes": int(m),
            "sessions": int(s), "volunteers": int(v),
        }
        for uid, m, s, v in rows
    ]
    return sorted(items, key=lambda item: (-item["total_minutes"], item["unit_id"]))
