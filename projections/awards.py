"""Commendation facts for eligibility: the current award rules, live grants, insured years."""

from __future__ import annotations

import json
from collections.abc import Sequence

from projections.feed import FeedEvent
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
    "year INTEGER NOT NULL, recipient_id TEXT NOT NULL, live INTEGER NOT NULL)",
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

class AwardsProjection(TableViews):
    """The rules in force per award and year, which grants are live, who was insured when."""

    name = "awards"
    schema_version = 1
    tables = TABLES
    ddl = DDL


    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        """Fold a page of events and write the changes."""
        rules = Latest("award_rules", "rules_id", ("award", "year", "version", "criteria"))
        grants = Latest("award_grants", "award_id", ("award", "year", "recipient_id", "live"))
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
                              recipient_id=d["recipient_id"], live=1)
            elif t == "Award.Regranted":
                grants.update(e.originator_id, live=1)
            elif t == "Award.Revoked":
                grants.update(e.originator_id, live=0)
            elif t == "Volunteer.Insured":
                insured.add((e.originator_id, int(d["year"])))
        rules.write(cur)
        grants.write(cur)
        cur.executemany("INSERT INTO award_insurance (volunteer_id, year) VALUES (?, ?) "
                        "ON CONFLICT (volunteer_id, year) DO NOTHING", sorted(insured))
