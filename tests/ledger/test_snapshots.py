"""Snapshots: a volunteer with years of sessions loads from a snapshot, equal to a full replay."""

from __future__ import annotations

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
    """Everything a volunteer aggregate holds, apart from events not yet saved."""
    return {k: v for k, v in vars(volunteer).items() if k != "_pending_events"}


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


def test_a_long_lived_volunteer_is_snapshotted(ledger: Ledger, busy: str) -> None:
    assert ledger.snapshots is not None
    assert len(list(ledger.snapshots.get(busy))) >= SESSIONS // ledger.settings.snapshot_interval


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
