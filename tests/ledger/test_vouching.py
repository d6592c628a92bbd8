"""Writes build only on what the audit log vouches for (bb33 F1, F2): stored events are
compared with their leaves when loaded, and snapshots carry a MAC under a key derived from the
signing key; an event changed after it was logged refuses the write, a forged snapshot is
passed over for the events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger, Settings
from ledger.errors import Forbidden, OverlappingSession, StoreAltered
from ledger.vouching import SNAPSHOT_KEY_LABEL, SnapshotSeal
from projections.models import ReadModels, auditor_views
from projections.signing import SigningKey
from projections.vouching import vouch_for
from tests.factories import (
    ADMIN,
    at,
    make_activity,
    make_unit,
    make_volunteer,
    record,
    recorder_of,
    tamper_with_events,
)

Opener = Callable[..., tuple[Ledger, ReadModels]]


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load(tmp_path / "signing-key.pem")


@pytest.fixture
def open_ledger(settings: Settings, key: SigningKey) -> Iterator[Opener]:
    """Opens a ledger on the test's store with its views, as a process of the API does
    (vouched for by its audit log unless `vouched` is False); each is closed at the end."""
    with ExitStack() as stack:
        def opened(vouched: bool = True, snapshot_interval: int = 50) -> tuple[Ledger, ReadModels]:
            ledger = Ledger(settings.model_copy(update={"snapshot_interval": snapshot_interval}))
            stack.callback(ledger.close)
            ledger.ensure_catalogue()
            models = ReadModels(ledger, extra=auditor_views())
            stack.callback(models.close)
            if vouched:
                vouch_for(ledger, models.store, key)
            return ledger, models

        yield opened


def _snapshot_key(ledger: Ledger, key: SigningKey) -> bytes:
    """The snapshot key of the ledger's store: derived with its own id."""
    store_id = ledger.recorder.store_id()  # type: ignore[attr-defined]
    return key.derived_key(SNAPSHOT_KEY_LABEL + b"\x00" + str(store_id).encode("ascii"))


def _stored(ledger: Ledger, position: int) -> Any:
    [event] = ledger.recorder.select_notifications(position, 1)
    return event


def _change_event(ledger: Ledger, models: ReadModels, position: int, old: bytes,
                  new: bytes) -> None:
    """The hostile operator: one stored event's bytes edited in place."""
    state = bytes(_stored(ledger, position).state)
    assert old in state
    tamper_with_events(models.store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
                       (state.replace(old, new), position))


def _snapshot(ledger: Ledger, aggregate_id: str) -> Any:
    assert ledger.snapshots is not None
    (latest,) = ledger.snapshots.recorder.select_events(aggregate_id, desc=True, limit=1)
    return latest


def _change_snapshot(ledger: Ledger, models: ReadModels, aggregate_id: str,
                     state: bytes) -> None:
    assert ledger.snapshots is not None
    table = ledger.snapshots.recorder.events_table_name  # type: ignore[attr-defined]
    with models.store.transaction() as cur:
        cur.execute(f"UPDATE {table} SET state = ? WHERE originator_id = ?",
                    (state, aggregate_id))


def test_a_correction_is_refused_when_a_logged_booking_was_changed_to_hide_an_overlap(
        open_ledger: Opener) -> None:
    """bb33 F1: the volunteer's booking of 09:00–10:00 edited to 07:00–08:00 made a
    correction of the next session into 09:30 pass the overlap check."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    first = record(ledger, volunteer, activity, at(9), at(10)).id
    second = record(ledger, volunteer, activity, at(10), at(11)).id
    models.catch_up()
    booking = ledger._positions([volunteer])[volunteer][2]
    assert _stored(ledger, booking).topic.endswith("Volunteer.SessionBooked")
    _change_event(ledger, models, booking, b'"_data_":"2017-03-05T09:00:00+08:00"},'
                  b'"ended_at":{"_type_":"datetime_iso","_data_":"2017-03-05T10:00:00',
                  b'"_data_":"2017-03-05T07:00:00+08:00"},'
                  b'"ended_at":{"_type_":"datetime_iso","_data_":"2017-03-05T08:00:00')
    restarted, _ = open_ledger()  # loads the volunteer from the store, not from memory
    head = restarted.head()

    with pytest.raises(StoreAltered) as refused:
        restarted.correct_session(ADMIN, second, at(9, 30), at(10, 30), "late sheet")

    assert refused.value.aggregate_id == volunteer and refused.value.position == booking
    assert f"the event at position {booking} no longer hashes to its leaf" in str(refused.value)
    assert restarted.head() == head  # nothing recorded
    assert restarted.get_session(first).started_at == at(9)


def test_a_correction_of_a_session_whose_logged_record_was_changed_is_refused(
        open_ledger: Opener) -> None:
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    _change_event(ledger, models, session.position, b"T10:00:00+08:00", b"T17:00:00+08:00")
    head = ledger.head()

    with pytest.raises(StoreAltered) as refused:
        ledger.correct_session(ADMIN, session.id, at(9), at(11), "late sheet")

    assert (refused.value.aggregate_id, refused.value.position) == (session.id,
                                                                     session.position)
    assert ledger.head() == head


def test_a_home_unit_changed_after_it_was_logged_lets_no_other_units_recorder_write(
        open_ledger: Opener) -> None:
    """bb33 F2: a recorder's unit check passed on a forged home unit."""
    ledger, models = open_ledger()
    home, other = make_unit(ledger), make_unit(ledger)
    volunteer = make_volunteer(ledger, home_unit_id=home)
    models.catch_up()
    registered = ledger._positions([volunteer])[volunteer][1]
    _change_event(ledger, models, registered, home.encode(), other.encode())
    restarted, _ = open_ledger()

    with pytest.raises(StoreAltered):
        restarted.complete_training(recorder_of(other), volunteer, "district", "online",
                                    "core", "first aid", date(2017, 3, 1), 2)


def test_an_event_changed_before_the_audit_log_took_it_in_is_refused_by_its_seal(
        open_ledger: Opener) -> None:
    """The log has no leaf to compare it with yet; the seal it was written with no longer
    matches its bytes (bb38 F2; before seals, the write built on it)."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    models.catch_up()
    session = record(ledger, volunteer, activity, at(9), at(10))  # not logged yet
    _change_event(ledger, models, session.position, b"T10:00:00+08:00", b"T10:30:00+08:00")
    head = ledger.head()

    with pytest.raises(StoreAltered, match="no seal") as refused:
        ledger.correct_session(ADMIN, session.id, at(9), at(11), "late sheet")

    assert refused.value.position == session.position and ledger.head() == head


def test_writes_on_an_unchanged_store_are_checked_once_per_load_and_go_through(
        open_ledger: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    check = ledger._loader.check
    assert check is not None
    calls: list[list[int]] = []

    def counted(events: Any, held: Any, query: Any) -> None:
        calls.append([position for position, _ in events])
        check(events, held, query)

    monkeypatch.setattr(ledger._loader, "check", counted)
    assert ledger.correct_session(ADMIN, session.id, at(9), at(11), "late").minutes == 120
    assert session.position in [p for positions in calls for p in positions]
    assert all(positions for positions in calls)  # one call per load that read events


def _forge_home_unit(ledger: Ledger, models: ReadModels, volunteer: str, home: str,
                     other: str, keep_mac: bool) -> None:
    state = bytes(_snapshot(ledger, volunteer).state)
    assert state.count(home.encode()) == 2  # home_unit_id and the membership
    forged = state.replace(home.encode(), other.encode())
    if not keep_mac:
        forged = forged[:forged.rindex(b',"mac":')] + b"}"
    _change_snapshot(ledger, models, volunteer, forged)


@pytest.mark.parametrize("keep_mac", [True, False], ids=["mac-kept", "mac-removed"])
def test_a_forged_snapshot_is_passed_over_for_the_volunteers_logged_events(
        open_ledger: Opener, keep_mac: bool) -> None:
    ledger, models = open_ledger(snapshot_interval=3)
    home, other = make_unit(ledger), make_unit(ledger)
    volunteer = make_volunteer(ledger, home_unit_id=home)
    activity = make_activity(ledger)
    for hour in (9, 10, 11):  # versions 2-4: a snapshot at version 3
        record(ledger, volunteer, activity, at(hour), at(hour + 1))
    models.catch_up()
    _forge_home_unit(ledger, models, volunteer, home, other, keep_mac)
    restarted, _ = open_ledger(snapshot_interval=3)

    assert restarted.get_volunteer(volunteer).home_unit_id == home
    with pytest.raises(Forbidden):
        restarted.complete_training(recorder_of(other), volunteer, "district", "online",
                                    "core", "first aid", date(2017, 3, 1), 2)
    # bb36 F9: a forged one (its MAC kept, not matching) is counted once for /metrics; one
    # without a MAC is like a snapshot stored before seals, and is not.
    restarted.get_volunteer(volunteer)
    assert len(restarted.refused_snapshots()) == (1 if keep_mac else 0)


def test_snapshots_are_sealed_under_the_key_derived_from_the_signing_key(
        open_ledger: Opener, key: SigningKey) -> None:
    ledger, _ = open_ledger(snapshot_interval=3)
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    for hour in (9, 10):
        record(ledger, volunteer, activity, at(hour), at(hour + 1))
    snapshot = _snapshot(ledger, volunteer)

    assert SnapshotSeal(_snapshot_key(ledger, key)).vouches(snapshot) is True
    assert SnapshotSeal(bytes(32)).vouches(snapshot) is False
    # The key is this store's (bb41 F3): not the one derived without its id.
    assert SnapshotSeal(key.derived_key(SNAPSHOT_KEY_LABEL)).vouches(snapshot) is False


def test_a_sealed_snapshot_is_still_used_and_the_volunteer_is_not_replayed_from_zero(
        open_ledger: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, models = open_ledger(snapshot_interval=3)
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    for hour in (9, 10, 11, 12):  # versions 2-5: the snapshot at version 3
        record(ledger, volunteer, activity, at(hour), at(hour + 1))
    models.catch_up()
    restarted, _ = open_ledger(snapshot_interval=3)
    loader = restarted._loader
    read: list[tuple[str, int]] = []
    fetch = loader._fetch

    def counted(cur: Any, statement: str, marks: int, ids: Any) -> list[Any]:
        found = fetch(cur, statement, marks, ids)
        read.append((statement, len(found)))
        return found

    monkeypatch.setattr(loader, "_fetch", counted)
    loaded = restarted.get_volunteer(volunteer)

    assert loaded.version == 5
    assert read == [(loader.statement, 3)]  # the snapshot at 3, events 4 and 5


def test_a_snapshot_stored_before_seals_is_replayed_from_events_and_sealed_at_the_next_save(
        open_ledger: Opener, key: SigningKey) -> None:
    before, models = open_ledger(vouched=False, snapshot_interval=3)
    volunteer, activity = make_volunteer(before), make_activity(before)
    for hour in (9, 10, 11):
        record(before, volunteer, activity, at(hour), at(hour + 1))
    models.catch_up()
    # As stored before seals (a ledger now seals its snapshots even without views).
    state = bytes(_snapshot(before, volunteer).state)
    _change_snapshot(before, models, volunteer, state[:state.rindex(b',"mac":')] + b"}")
    seal = SnapshotSeal(_snapshot_key(before, key))
    assert seal.vouches(_snapshot(before, volunteer)) is None
    after, _ = open_ledger(snapshot_interval=3)

    assert after.get_volunteer(volunteer) == before.get_volunteer(volunteer)
    with pytest.raises(OverlappingSession):
        record(after, volunteer, activity, at(9, 30), at(10, 30))
    record(after, volunteer, activity, at(13), at(14))  # version 5: not on an interval
    assert seal.vouches(_snapshot(after, volunteer)) is True
