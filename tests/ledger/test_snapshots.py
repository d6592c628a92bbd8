"""Snapshots: a volunteer with years of sessions loads from a snapshot, equal to a full replay."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from ledger import Ledger, Settings
from ledger.errors import OverlappingSession
from ledger.volunteers import Volunteer
from tests.factories import ADMIN, CST, make_activity, make_unit, make_volunteer, session_record

SESSIONS = 210
FIRST = datetime(2017, 1, 2, 8, 0, tzinfo=CST)


def state(volunteer: Volunteer) -> dict[str, Any]:
    """Everything a volunteer aggregate holds, apart from events not yet saved and what it
    derives from the rest (its calendar's index)."""
    return {k: v for k, v in vars(volunteer).items()
            if k != "_pending_events" and k not in Volunteer.derived}


def hour(n: int) -> datetime:
    return FIRST + timedelta(hours=n)


@pytest.fixture
def busy(ledger: Ledger) -> str:
    """A volunteer with 210 sessions, some corrected and voided, a transfer and a training."""
    volunteer_id = make_volunteer(ledger, registered_on=date(2017, 1, 1))
    activity = make_activity(ledger, starts_at=FIRST, ends_at=hour(24 * 30))
    records = [session_record(volunteer_id, activity, hour(n), hour(n) + timedelta(minutes=50),
                              source_record_id=f"busy-{n}") for n in range(SESSIONS)]
    for start in range(0, SESSIONS, 30):
        result = ledger.record_sessions(ADMIN, records[start:start + 30])
        assert result.count("accepted") == len(records[start:start + 30])
    session_ids = list(ledger.get_volunteer(volunteer_id).sessions)
    for n in range(0, 50, 10):
        ledger.void_session(ADMIN, session_ids[n], "entered twice")
        ledger.correct_session(ADMIN, session_ids[n + 1], hour(n + 1),
                               hour(n + 1) + timedelta(minutes=55), "late sheet")
    ledger.transfer_volunteer(ADMIN, volunteer_id, make_unit(ledger), date(2017, 1, 10))
    ledger.complete_training(ADMIN, volunteer_id, "city", "online", "core", "T",
                             date(2017, 1, 5), 2)
    return volunteer_id


@pytest.fixture
def replaying(settings: Settings) -> Iterator[Ledger]:
    """A ledger on the same store that ignores snapshots and replays every event."""
    the_ledger = Ledger(settings, env={"IS_SNAPSHOTTING_ENABLED": "n"})
    yield the_ledger
    the_ledger.close()


@pytest.fixture
def fresh(settings: Settings) -> Iterator[Ledger]:
    """Another ledger on the same store, as a second process would open it."""
    the_ledger = Ledger(settings)
    yield the_ledger
    the_ledger.close()


def test_a_long_lived_volunteer_keeps_only_their_latest_snapshot(ledger: Ledger,
                                                                  busy: str) -> None:
    # Each snapshot holds every session so far: keeping them all grew as the square of a
    # volunteer's sessions (17 MB of snapshots beside 18 MB of events at 20,000 sessions).
    assert ledger.snapshots is not None
    (latest,) = ledger.snapshots.get(busy)
    assert latest.originator_version >= SESSIONS // 50 * 50
    assert "_calendar" not in latest.state


def test_single_sessions_keep_one_snapshot_as_they_cross_intervals(
        ledger: Ledger, busy: str) -> None:
    activity = make_activity(ledger, starts_at=FIRST, ends_at=hour(24 * 30))
    for n in range(60):  # one save each: at least one more snapshot is taken
        ledger.record_session(ADMIN, session_record(
            busy, activity, hour(SESSIONS + n), hour(SESSIONS + n) + timedelta(minutes=30),
            source_record_id=f"single-{n}"))
    assert ledger.snapshots is not None
    (latest,) = ledger.snapshots.get(busy)
    assert ledger.get_volunteer(busy).version - latest.originator_version < 50


def test_loading_a_long_lived_volunteer_replays_only_the_events_after_the_snapshot(
        ledger: Ledger, busy: str) -> None:
    assert ledger.snapshots is not None
    (latest,) = ledger.snapshots.get(busy, desc=True, limit=1)
    version = ledger.get_volunteer(busy).version
    assert version > SESSIONS and version - latest.originator_version < 50


def test_a_volunteer_loaded_from_a_snapshot_equals_a_full_replay(
        busy: str, fresh: Ledger, replaying: Ledger) -> None:
    assert state(fresh.get_volunteer(busy)) == state(replaying.get_volunteer(busy))


def test_a_ledger_with_a_huge_snapshot_interval_loads_the_same_volunteer(
        busy: str, fresh: Ledger, settings: Settings) -> None:
    rare = Ledger(settings.model_copy(update={"snapshot_interval": 10**9}))
    try:
        assert state(rare.get_volunteer(busy)) == state(fresh.get_volunteer(busy))
    finally:
        rare.close()


def test_a_snapshotted_volunteer_still_refuses_an_overlap_with_an_early_session(
        busy: str, fresh: Ledger) -> None:
    activity = make_activity(fresh, starts_at=FIRST, ends_at=hour(24 * 30))
    with pytest.raises(OverlappingSession):
        fresh.record_session(ADMIN, session_record(busy, activity, hour(2), hour(3)))


def test_overlaps_found_by_the_calendar_match_a_scan_of_every_session(
        ledger: Ledger, fresh: Ledger, replaying: Ledger) -> None:
    """The calendar's index (sorted, built once, kept in step by bookings, corrections and
    voids) refuses a session or a correction exactly when a scan of every live session finds
    an overlap: on the ledger that keeps the volunteer between writes, and on volunteers
    loaded from a snapshot or replayed. Corrections to a day-long time widen its search."""
    rng = random.Random(4)
    volunteer_id = make_volunteer(ledger, registered_on=date(2017, 1, 1))
    activity = make_activity(ledger, starts_at=FIRST, ends_at=hour(24 * 30))
    live: dict[str, tuple[datetime, datetime]] = {}

    def clash(start: datetime, end: datetime, ignore: str = "") -> str | None:
        return next((i for i, (s, e) in live.items() if i != ignore and s < end and start < e),
                    None)

    for n in range(200):
        start = hour(rng.randrange(24 * 28)) + timedelta(minutes=rng.randrange(0, 60, 15))
        end = start + timedelta(minutes=rng.choice([15, 45, 60, 180, 24 * 60]))
        expected = clash(start, end)
        for loaded in (fresh.get_volunteer(volunteer_id),
                       replaying.get_volunteer(volunteer_id)):
            found = loaded.overlapping(start, end)
            assert (found is None) == (expected is None), (n, found, expected)
        action = rng.random()
        if action < 0.6:
            if expected is None:
                written = ledger.record_session(ADMIN, session_record(
                    volunteer_id, activity, start, end, source_record_id=f"cal-{n}"))
                live[written.id] = (start, end)
            else:
                with pytest.raises(OverlappingSession):
                    ledger.record_session(ADMIN, session_record(
                        volunteer_id, activity, start, end, source_record_id=f"cal-{n}"))
        elif live and action < 0.8:
            moved = rng.choice(sorted(live))
            if clash(start, end, ignore=moved) is None:
                ledger.correct_session(ADMIN, moved, start, end, "wrong time")
                live[moved] = (start, end)
            else:
                with pytest.raises(OverlappingSession):
                    ledger.correct_session(ADMIN, moved, start, end, "wrong time")
        elif live:
            voided = rng.choice(sorted(live))
            ledger.void_session(ADMIN, voided, "entered twice")
            del live[voided]
    assert len(live) > 20  # the calendar was busy enough for overlaps to be found
