"""Loading many aggregates in one statement, and aggregates kept between batches."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from ledger import Ledger, Settings
from ledger.activities import Activity
from ledger.errors import OverlappingSession
from ledger.volunteers import Volunteer
from tests.factories import ADMIN, at, make_activity, make_volunteer, session_record


@pytest.fixture
def other(settings: Settings) -> Iterator[Ledger]:
    """Another ledger on the same store, as a second process would open it."""
    the_ledger = Ledger(settings)
    yield the_ledger
    the_ledger.close()


def test_many_ids_load_at_once_leaving_out_unknown_unusable_and_other_kinds(
        ledger: Ledger) -> None:
    people = [make_volunteer(ledger) for _ in range(3)]
    activity = make_activity(ledger)

    loaded = ledger._get_many(Volunteer, [*people, activity, "", "bad\x00id", "vol-unknown",
                                          "x" * 500])

    assert sorted(loaded) == sorted(people)
    assert all(loaded[p].version == ledger.get_volunteer(p).version for p in people)
    assert list(ledger._get_many(Activity, [activity, people[0]])) == [activity]


def test_a_batch_sees_what_another_process_wrote_since_this_one_kept_the_volunteer(
        ledger: Ledger, other: Ledger) -> None:
    person, friend = make_volunteer(ledger), make_volunteer(ledger)
    activity = make_activity(ledger)
    first = ledger.record_sessions(ADMIN, [session_record(person, activity, at(9), at(10)),
                                           session_record(friend, activity, at(9), at(10))])
    assert first.count("accepted") == 2
    other.record_session(ADMIN, session_record(person, activity, at(11), at(12)))

    kept = ledger._borrow_many(Volunteer, [person])[person]
    assert kept.version == other.get_volunteer(person).version
    assert len(kept.sessions) == 2

    second = ledger.record_sessions(ADMIN, [
        session_record(person, activity, at(11, 30), at(12, 30)),
        session_record(friend, activity, at(13), at(14))])
    assert [o.status for o in second.outcomes] == ["rejected", "accepted"]
    assert isinstance(second.outcomes[0].error, OverlappingSession)


def test_a_batch_that_fails_to_save_gives_back_nothing_it_changed(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    person = make_volunteer(ledger)
    activity = make_activity(ledger)
    ledger.record_sessions(ADMIN, [session_record(person, activity, at(8), at(9))])
    record = session_record(person, activity, at(9), at(10), source_record_id="sheet-7")

    def broken(*aggregates: Any, **guarded: Any) -> list[Any]:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(ledger, "_save_recorded", broken)  # what every save goes through
    with pytest.raises(RuntimeError):
        ledger.record_sessions(ADMIN, [record])
    monkeypatch.undo()

    again = ledger.record_sessions(ADMIN, [record])
    assert [o.status for o in again.outcomes] == ["accepted"]
    assert len(ledger.get_volunteer(person).sessions) == 2


def test_a_ledger_that_keeps_nothing_loads_every_batch_from_the_store(settings: Settings) -> None:
    lean = Ledger(settings.model_copy(update={"kept_aggregates": 0}))
    try:
        lean.ensure_catalogue()
        person = make_volunteer(lean)
        activity = make_activity(lean)
        for hour in (8, 9, 10):
            result = lean.record_sessions(ADMIN, [session_record(person, activity, at(hour),
                                                                 at(hour, 30))])
            assert result.count("accepted") == 1
        assert lean._kept.take([person, activity]) == {}
        overlap = lean.record_sessions(ADMIN, [session_record(person, activity, at(9, 15),
                                                              at(9, 45))])
        assert isinstance(overlap.outcomes[0].error, OverlappingSession)
    finally:
        lean.close()


def test_loading_looks_each_id_up_by_index_without_table_statistics(ledger: Ledger) -> None:
    # A store whose tables were never analysed (autovacuum off, or filled faster than it runs):
    # `originator_id = ANY(…)` was planned as a scan of the whole log (1.6 s per batch at 3.9M
    # events). The statements must look each id up by the primary key whatever the statistics.
    loader = ledger._loader
    ledger.recorder.insert_events([
        StoredEvent(originator_id=f"vol-{i // 4:08d}", originator_version=i % 4 + 1,
                    topic="ledger.volunteers:Volunteer.Noted", state=b"{}")
        for i in range(60_000)])
    ids = [f"vol-{i:08d}" for i in range(0, 15_000, 10)]
    statements = ((loader.statement, loader.marks), (loader.versions_statement, 1))
    with ledger.recorder.datastore.transaction(commit=False) as cur:
        if loader.postgres:
            cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                        [f'"{ledger.settings.store().schema}".ledger_events'])
            assert cur.fetchone()["reltuples"] == -1  # never analysed
            for statement, marks in statements:
                cur.execute("EXPLAIN (FORMAT JSON) " + statement, [ids] * marks)
                plan = json.dumps(cur.fetchone()["QUERY PLAN"])
                assert "Seq Scan" not in plan, plan
        else:
            cur.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
            assert cur.fetchall() == []  # never analysed
            for statement, marks in statements:
                cur.execute("EXPLAIN QUERY PLAN " + statement, [json.dumps(ids)] * marks)
                steps = [str(row[3]) for row in cur.fetchall()]
                # Only the id list and the (small) latest-snapshot table may be scanned.
                scans = [d for d in steps if d.startswith("SCAN ")
                         and "VIRTUAL TABLE" not in d and d != "SCAN l"]
                assert scans == [], steps
                assert any(d.startswith("SEARCH") for d in steps), steps
    assert len(ledger._loader.versions(ids)) == len(ids)
    assert len(ledger._loader.stored(ids)) == 4 * len(ids)


@pytest.mark.stores("sqlite")
def test_a_long_history_costs_sqlite_no_more_to_version_or_load(ledger: Ledger,
                                                                settings: Settings) -> None:
    # `IN (…) GROUP BY` took the version of an id by reading all its events, and the events
    # after its snapshot by reading all of them and filtering: 3.3 ms and 18 ms for a
    # volunteer with 20,000 sessions (bb23 F4). Counted in SQLite's VM steps, which do not
    # depend on the machine's speed: an id with 20,000 events costs what one with 4 does.
    heavy, light = "vol-heavy", "vol-light"
    ledger.recorder.insert_events(
        [StoredEvent(originator_id=heavy, originator_version=v, topic="t", state=b"{}")
         for v in range(1, 20_001)]
        + [StoredEvent(originator_id=light, originator_version=v, topic="t", state=b"{}")
           for v in range(1, 5)])
    assert ledger.snapshots is not None
    ledger.snapshots.recorder.insert_events([
        StoredEvent(originator_id=i, originator_version=v, topic="s", state=b"{}")
        for i, v in ((heavy, 19_998), (light, 2))])
    loader = ledger._loader
    path = settings.store().sqlite_path
    assert path is not None
    with sqlite3.connect(path) as conn:
        def steps(statement: str, marks: int, wanted: str) -> tuple[int, list[Any]]:
            counted = [0]

            def count() -> int:
                counted[0] += 1
                return 0

            conn.set_progress_handler(count, 100)
            try:
                rows = conn.execute(statement, [json.dumps([wanted])] * marks).fetchall()
            finally:
                conn.set_progress_handler(None, 100)
            return counted[0], rows

        (heavy_v, rows_v), (light_v, _) = (steps(loader.versions_statement, 1, i)
                                           for i in (heavy, light))
        (heavy_l, rows_l), (light_l, _) = (steps(loader.statement, loader.marks, i)
                                           for i in (heavy, light))
    assert rows_v == [(heavy, 20_000)]
    assert [(r[1], r[4]) for r in rows_l] == [(19_998, 0), (19_999, 1), (20_000, 1)]
    assert heavy_v <= light_v + 2 and heavy_l <= light_l + 2, (heavy_v, light_v, heavy_l,
                                                                light_l)


def test_corrections_and_voids_reuse_the_kept_volunteer_unless_another_process_wrote(
        ledger: Ledger, other: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    # bb27: each correction or void loaded the volunteer again (a 2 MB snapshot at 29,000
    # sessions: 57 ms a correction on SQLite, against 9 ms for a newcomer).
    person = make_volunteer(ledger)
    activity = make_activity(ledger)
    ids = [ledger.record_session(ADMIN, session_record(person, activity, at(h), at(h, 30))).id
           for h in (8, 9, 10)]
    loaded: list[str] = []
    load = ledger._get_many

    def counted(cls: Any, wanted: Any) -> Any:
        loaded.extend(i for i in wanted if cls is Volunteer)
        return load(cls, wanted)

    monkeypatch.setattr(ledger, "_get_many", counted)
    ledger.correct_session(ADMIN, ids[0], at(8, 5), at(8, 35), "late sheet")
    ledger.void_session(ADMIN, ids[1], "entered twice")
    assert loaded == []
    # Kept in step: the freed and the moved times are as the store says.
    ledger.record_session(ADMIN, session_record(person, activity, at(9), at(9, 30)))
    with pytest.raises(OverlappingSession):
        ledger.record_session(ADMIN, session_record(person, activity, at(8, 30), at(8, 40)))
    # Another process's write moves the volunteer on: loaded again, not overwritten.
    other.void_session(ADMIN, ids[2], "entered twice")
    ledger.correct_session(ADMIN, ids[0], at(10), at(10, 20), "wrong hour")
    assert loaded == [person]
    assert other.get_volunteer(person) == ledger.get_volunteer(person)
