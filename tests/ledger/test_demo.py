"""The demo district: deterministic for a seed, every program, the plan's units, no overlaps."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

from ledger import Ledger, Settings
from ledger.demo import DemoNeedsEmptyLedger, generate_district
from tests.factories import make_unit

VOLUNTEERS, SESSIONS, SEED = 60, 400, 5
NAMED = ("梅列区", "列东街道", "列西街道", "徐碧街道", "陈大镇", "洋溪镇", "区民政局",
         "区妇联", "团区委", "区教育局", "区文广局", "区环保局", "区委文明办", "起飞公园驿站",
         "青少年宫广场驿站", "区图书馆", "区文化馆")


def _recorded(ledger: Ledger) -> list[dict[str, object]]:
    topic = "ledger.sessions:ServiceSession.Recorded"
    page = ledger.recorder.select_notifications(1, 1_000_000, topics=[topic])
    return [ledger.mapper.to_domain_event(n).__dict__ for n in page]


def test_the_same_seed_gives_the_same_district_on_any_store(ledger: Ledger,
                                                            tmp_path: Path) -> None:
    first = generate_district(ledger, VOLUNTEERS, SESSIONS, SEED)
    again = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'again.db'}"))
    try:
        second = generate_district(again, VOLUNTEERS, SESSIONS, SEED)
        recorded = [_fields(e) for e in _recorded(again)]
        after_demo = make_unit(again)
    finally:
        again.close()
    assert first == second
    # Ids included: units, volunteers and activities (and so sessions) are the same ones.
    assert first.unit_ids == second.unit_ids
    assert [_fields(e) for e in _recorded(ledger)] == recorded
    # Ids given outside the demo stay random.
    assert make_unit(ledger) != after_demo


def _fields(event: dict[str, object]) -> tuple[str, ...]:
    return tuple(str(event[k]) for k in ("originator_id", "volunteer_id", "activity_id",
                                         "organiser_unit_id", "started_at", "minutes"))


def test_another_seed_gives_another_district(ledger: Ledger, tmp_path: Path) -> None:
    first = generate_district(ledger, VOLUNTEERS, SESSIONS, SEED)
    other = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'other.db'}"))
    try:
        assert generate_district(other, VOLUNTEERS, SESSIONS, SEED + 1) != first
    finally:
        other.close()


def test_the_demo_has_every_program_and_the_units_the_plan_names(ledger: Ledger) -> None:
    summary = generate_district(ledger, VOLUNTEERS, SESSIONS, SEED)
    assert len(summary.sessions_by_program) == 16
    assert all(count > 0 for count in summary.sessions_by_program.values())
    assert set(NAMED) <= set(summary.unit_ids)
    assert summary.rejected == 0
    assert summary.sessions == sum(summary.sessions_by_program.values())
    assert summary.sessions >= SESSIONS * 0.9
    assert summary.award_rules == 4
    for award in ("most_beautiful_volunteer", "best_organisation", "best_project",
                  "best_community"):
        assert ledger.get_award_rules(award, 2017) is not None


def test_no_volunteer_has_overlapping_sessions(ledger: Ledger) -> None:
    generate_district(ledger, VOLUNTEERS, SESSIONS, SEED)
    by_volunteer = defaultdict(list)
    for event in _recorded(ledger):
        by_volunteer[event["volunteer_id"]].append((event["started_at"], event["ended_at"]))
    assert by_volunteer
    for spans in by_volunteer.values():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            assert end <= start


def test_sessions_last_one_to_four_hours_mostly_and_lie_in_2017(ledger: Ledger) -> None:
    generate_district(ledger, VOLUNTEERS, SESSIONS, SEED)
    events = _recorded(ledger)
    in_range = [e for e in events if 60 <= int(e["minutes"]) <= 240]  # type: ignore[call-overload]
    assert len(in_range) >= 0.85 * len(events)
    assert all(str(e["service_date"]).startswith("2017-") for e in events)


def test_the_demo_refuses_a_ledger_that_has_units_but_no_volunteers(ledger: Ledger) -> None:
    # An earlier demo that stopped after its units: a second run would register them twice.
    make_unit(ledger)
    with pytest.raises(DemoNeedsEmptyLedger):
        generate_district(ledger, 20, 50, SEED)


def test_the_demo_refuses_a_ledger_that_has_volunteers(ledger: Ledger) -> None:
    generate_district(ledger, 20, 50, SEED)
    with pytest.raises(DemoNeedsEmptyLedger):
        generate_district(ledger, 20, 50, SEED)
