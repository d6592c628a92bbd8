"""Commendation facts for eligibility (the current award rules, live grants, insured years),
and the list of awards (GET /v1/awards)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from projections.feed import FeedEvent
from projections.pages import equal_to, page_rows, read_snapshot
from projections.store import ViewCursor
from projections.tally import Latest, TableViews

TABLES: dict[str, tuple[str, ...]] = {
    "award_rules": ("rules_id",),
    "award_grants": ("award_id",),
    "award_insurance": ("volunteer_id", "year"),
}

DDL = (
    "CREATE TABLE IF NOT EXISTS award_rules (rules_id TEXT PRIMARY KEY, award TEXT NOT NULL, "
    "year INTEGER NOT NULL, version INTEGER NOT NULL, criteria TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS award_grants (award_id TEXT PRIMARY KEY, award TEXT NOT NULL, "
    "year INTEGER NOT NULL, recipient_id TEXT NOT NULL, live INTEGER NOT NULL, "
    "recipient_kind TEXT NOT NULL, decision_ref TEXT NOT NULL, rules_version INTEGER NOT NULL, "
    "revoked_reason TEXT, version INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS award_grants_by_award ON award_grants (award, year, recipient_id)",
    "CREATE TABLE IF NOT EXISTS award_insurance (volunteer_id TEXT NOT NULL, "
    "year INTEGER NOT NULL, PRIMARY KEY (volunteer_id, year))",
)


HANDLED = frozenset({
    "Award.Granted",
    "Award.Regranted",
    "Award.Revoked",
    "AwardRules.Published",
    "AwardRules.Republished",
    "Volunteer.Insured",
})

GRANT_COLUMNS = ("award", "year", "recipient_id", "live", "recipient_kind", "decision_ref",
                 "rules_version", "revoked_reason", "version")
STATUSES = ("granted", "revoked", "all")


class AwardsProjection(TableViews):
    """The rules in force per award and year, which grants are live, who was insured when."""

    name = "awards"
    schema_version = 2  # 2: award_grants holds what GET /v1/awards lists (bb36 F6)
    tables = TABLES
    ddl = DDL

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        """Fold a page of events and write the changes."""
        rules = Latest("award_rules", "rules_id", ("award", "year", "version", "criteria"))
        grants = Latest("award_grants", "award_id", GRANT_COLUMNS)
        insured: set[tuple[str, int]] = set()
        for e in events:
            t = e.type
            if t not in HANDLED:
                continue  # most events never need their JSON decoded here
            d = e.data
            if t in ("AwardRules.Published", "AwardRules.Republished"):
                rules.create(e.originator_id, award=d["award"], year=int(d["year"]),
                             version=int(d["version"]), criteria=json.dumps(d["criteria"]))
            elif t == "Award.Granted":
                grants.create(e.originator_id, award=d["award"], year=int(d["year"]),
                              recipient_id=d["recipient_id"], live=1,
                              recipient_kind=d["recipient_kind"],
                              decision_ref=d["decision_ref"],
                              rules_version=int(d["rules_version"]), version=e.version)
            elif t == "Award.Regranted":
                grants.update(e.originator_id, live=1, decision_ref=d["decision_ref"],
                              rules_version=int(d["rules_version"]), revoked_reason=None,
                              version=e.version)
            elif t == "Award.Revoked":
                grants.update(e.originator_id, live=0, revoked_reason=d["reason"],
                              version=e.version)
            elif t == "Volunteer.Insured":
                insured.add((e.originator_id, int(d["year"])))
        rules.write(cur)
        grants.write(cur)
        cur.executemany("INSERT INTO award_insurance (volunteer_id, year) VALUES (?, ?) "
                        "ON CONFLICT (volunteer_id, year) DO NOTHING", sorted(insured))


@dataclass(frozen=True)
class AwardQuery:
    """Which awards a page lists: of a year, of an award, to a recipient, live or not."""

    year: int | None = None
    award: str | None = None
    recipient_id: str | None = None
    status: str = "all"


def awards_page(cur: ViewCursor, query: AwardQuery, after: Sequence[str] | None,
                count: int) -> tuple[int, list[dict[str, Any]]]:
    """The position the view has read to, and at most `count` awards after the key `after`
    (year, award, recipient id) in that order: each (award, year, recipient) is one award."""
    position = read_snapshot(cur, ("awards",))
    where, params = equal_to((("year", query.year), ("award", query.award),
                              ("recipient_id", query.recipient_id)))
    if query.status != "all":
        where.append("live = ?")
        params.append(1 if query.status == "granted" else 0)
    rows = page_rows(
        cur, "SELECT award_id, award, year, recipient_id, recipient_kind, decision_ref, "
        "rules_version, live, revoked_reason, version FROM award_grants", where, params,
        ("year", "award", "recipient_id"),
        None if after is None else (int(after[0]), after[1], after[2]), count)
    return position, [{
        "id": aid, "award": award, "year": int(year), "recipient_id": recipient,
        "recipient_kind": kind, "decision_ref": ref, "rules_version": int(rules),
        "status": "granted" if live else "revoked", "revoked_reason": reason,
        "version": int(version),
    } for aid, award, year, recipient, kind, ref, rules, live, reason, version in rows]
