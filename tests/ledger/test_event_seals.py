"""Every event the ledger writes carries a seal only the signing key can make (bb38 F2): an
event appended to the store by hand, well-formed or not, is taken in by no view, built on by
no write and served by no feed; the start of sealing cannot be moved or deleted to pass such an
event off as an older, unsealed one (ledger/eventseals.py)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger, Settings
from ledger.errors import AuditLogAltered, StoreAltered
from ledger.eventseals import LABEL, SEALS_TABLE, START_TABLE, anchor_path, leaf_bytes
from ledger.keks import kek_path
from ledger.settings import ConfigurationError
from ledger.signingkey import derive_key, load_private_key
from ledger.volunteers import Volunteer
from projections.audit import Auditor, refuse_unsealed
from projections.history import event_feed
from projections.models import ReadModels, auditor_views
from projections.signing import SigningKey
from projections.sweep import Sweeper
from projections.verification import verify_log
from projections.vouching import vouch_for
from tests.factories import at, make_activity, make_volunteer, record

Opener = Callable[..., tuple[Ledger, ReadModels]]


@pytest.fixture
def open_ledger(settings: Settings, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Opener]:
    """Opens a ledger on the test's store with its views and vouching, as the API does; the
    signing key in the test's directory (on both stores)."""
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "signing-key.pem"))
    with ExitStack() as stack:
        def opened(sealed: bool = True) -> tuple[Ledger, ReadModels]:
            ledger = Ledger(settings)
            stack.callback(ledger.close)
            if not sealed:  # a ledger of before seals
                ledger.recorder.seals = None  # type: ignore[attr-defined]
            ledger.ensure_catalogue()
            models = ReadModels(ledger, extra=auditor_views())
            stack.callback(models.close)
            vouch_for(ledger, models.store, SigningKey.load(tmp_path / "signing-key.pem"))
            return ledger, models

        yield opened


def _table(ledger: Ledger) -> tuple[str, str]:
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    return table, "notification_id" if ledger.settings.store().kind == "postgres" else "rowid"


def _event(ledger: Ledger, position: int) -> Any:
    [event] = ledger.recorder.select_notifications(position, 1)
    return event


def _append_by_hand(ledger: Ledger, models: ReadModels, originator_id: str, version: int,
                    topic: str, state: bytes) -> int:
    """The hostile operator: a well-formed event inserted with SQL; its position."""
    table, _ = _table(ledger)
    with models.store.transaction() as cur:
        cur.execute(f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?)", (originator_id, version, topic, state))
    return ledger.head()


def _copy_of_session(ledger: Ledger, models: ReadModels, position: int) -> tuple[str, int]:
    """A second session appended by hand, a byte-for-byte copy of a recorded one under a new
    id: well-formed in every way but its seal."""
    event = _event(ledger, position)
    new_id = str(uuid.uuid4())
    state = bytes(event.state).replace(str(event.originator_id).encode(), new_id.encode())
    return new_id, _append_by_hand(ledger, models, new_id, 1, event.topic, state)


def _minutes(models: ReadModels, volunteer: str) -> int:
    hours = models.volunteer_hours(volunteer)
    assert hours is not None
    return int(hours["total_minutes"])


def _seal_count(models: ReadModels) -> int:
    with models.store.reading() as cur:
        return int(cur.execute(f"SELECT COUNT(*) FROM {SEALS_TABLE}").fetchone()[0])


def test_every_event_written_is_sealed_and_the_seals_check(open_ledger: Opener) -> None:
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    record(ledger, volunteer, activity, at(9), at(10))
    head = ledger.head()
    assert _seal_count(models) == head  # the catalogue's events too: sealed from the first
    events = ledger.recorder.select_notifications(1, head)
    with models.store.reading() as cur:
        refuse_unsealed(cur, ledger.seals, [
            (e.id, leaf_bytes(e.id, str(e.originator_id), e.originator_version, e.topic,
                              bytes(e.state))) for e in events])
    assert models.catch_up() == head


def test_a_seal_is_the_hmac_sha256_of_the_leaf_under_the_derived_key_cut_to_16_bytes(
        open_ledger: Opener) -> None:
    """The seal's bytes, made here with `hmac` itself: the recorders' faster MAC (the key's
    pads hashed once) must make the same ones."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    record(ledger, volunteer, activity, at(9), at(10))
    key = derive_key(load_private_key(ledger.seals.key_file), LABEL)
    with models.store.reading() as cur:
        stored = {int(p): bytes(m) for p, m in cur.execute(
            f"SELECT position, mac FROM {SEALS_TABLE}").fetchall()}
    events = ledger.recorder.select_notifications(1, ledger.head())
    assert stored == {e.id: hmac.new(key, leaf_bytes(
        e.id, str(e.originator_id), e.originator_version, e.topic, bytes(e.state)),
        hashlib.sha256).digest()[:16] for e in events}


def test_a_session_appended_by_hand_is_counted_by_no_view(open_ledger: Opener) -> None:
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    before = _minutes(models, volunteer)
    _, forged = _copy_of_session(ledger, models, session.position)

    with pytest.raises(AuditLogAltered) as refused:
        models.catch_up()

    assert f"position(s) {forged})" in str(refused.value) and "by hand" in str(refused.value)
    assert models.runner.position() == forged - 1  # its page was refused, by every view
    assert _minutes(models, volunteer) == before == 60
    assert models.runner.failure is not None and "no seal" in models.runner.failure[1]
    # What the message advises: the event deleted, the views go on from where they stopped.
    table, column = _table(ledger)
    with models.store.transaction() as cur:
        cur.execute(f"DELETE FROM {table} WHERE {column} = ?", (forged,))
    record(ledger, volunteer, activity, at(11), at(12))
    assert models.catch_up() == ledger.head() and _minutes(models, volunteer) == 120


def test_a_write_does_not_build_on_an_event_appended_by_hand_past_the_log(
        open_ledger: Opener) -> None:
    """The booking of a forged session on the volunteer's own record, appended by hand before
    the log took it in: a write that loads the volunteer is refused, and stores nothing."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    versions = ledger._positions([volunteer])[volunteer]
    booking = versions[max(versions)]
    event = _event(ledger, booking)
    forged = _append_by_hand(ledger, models, volunteer, event.originator_version + 1,
                             event.topic, bytes(event.state).replace(b"T09:", b"T13:").replace(
                                 b"T10:", b"T14:").replace(str(event.originator_version).encode(),
                                                           str(event.originator_version + 1)
                                                           .encode()))
    restarted, _ = open_ledger()
    head = restarted.head()

    with pytest.raises(StoreAltered) as refused:
        record(restarted, volunteer, activity, at(11), at(12))

    assert refused.value.aggregate_id == volunteer and refused.value.position == forged
    assert "no seal" in str(refused.value)
    assert restarted.head() == head and session.position < forged


def test_the_feed_serves_no_event_appended_by_hand(open_ledger: Opener) -> None:
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    _, forged = _copy_of_session(ledger, models, session.position)

    with pytest.raises(AuditLogAltered, match=f"position\\(s\\) {forged}\\)"):
        event_feed(ledger.recorder, session.position - 1, 100, store=models.store)

    assert len(event_feed(ledger.recorder, 0, forged - 1, store=models.store)) == forged - 1


def test_a_copied_seal_does_not_seal_another_event(open_ledger: Opener) -> None:
    """The operator copies a real event's seal row to the forged event's position."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    _, forged = _copy_of_session(ledger, models, session.position)
    with models.store.transaction() as cur:
        cur.execute(f"INSERT INTO {SEALS_TABLE} (position, mac) SELECT ?, mac FROM "
                    f"{SEALS_TABLE} WHERE position = ?", (forged, session.position))

    with pytest.raises(AuditLogAltered, match="no seal"):
        models.catch_up()


def test_events_of_before_seals_are_taken_in_and_seals_begin_with_the_first_sealed_write(
        open_ledger: Opener) -> None:
    """An upgraded store: its events carry no seal, and need none."""
    old, _ = open_ledger(sealed=False)
    volunteer, activity = make_volunteer(old), make_activity(old)
    record(old, volunteer, activity, at(9), at(10))
    unsealed_head = old.head()
    ledger, models = open_ledger()
    assert models.catch_up() == unsealed_head  # nothing is sealed yet: nothing is required

    record(ledger, volunteer, activity, at(10), at(11))

    assert models.catch_up() == ledger.head()
    with models.store.reading() as cur:
        assert cur.execute(f"SELECT position FROM {START_TABLE}").fetchone()[0] == \
            unsealed_head + 1
    assert _seal_count(models) == ledger.head() - unsealed_head
    assert _minutes(models, volunteer) == 120
    # A writer that does not seal cannot write after the start: it would be refused.
    _, forged = _copy_of_session(ledger, models, unsealed_head)
    with pytest.raises(AuditLogAltered):
        models.catch_up()
    assert forged > unsealed_head


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_the_start_of_sealing_cannot_be_deleted_or_moved(open_ledger: Opener, settings: Settings,
                                                         how: str) -> None:
    """Deleting the start (and every seal) would pass an event appended by hand off as one
    of before seals; the start is also kept beside the KEK file."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    anchor = anchor_path(kek_path(settings.store(), settings.kek_file), settings.store())
    assert anchor.exists()
    _, forged = _copy_of_session(ledger, models, session.position)
    with models.store.transaction() as cur:
        if how == "deleted":
            cur.execute(f"DELETE FROM {SEALS_TABLE}")
            cur.execute(f"DELETE FROM {START_TABLE}")
        else:
            cur.execute(f"UPDATE {START_TABLE} SET position = ?", (forged + 1,))
    restarted, views = open_ledger()  # a new process: it reads the start again

    with pytest.raises(StoreAltered, match=r"start of (its )?sealed events"):
        views.catch_up()
    with pytest.raises(StoreAltered, match=r"start of (its )?sealed events"):
        record(restarted, volunteer, activity, at(11), at(12))


def test_a_sealed_store_is_not_written_without_its_key(open_ledger: Opener, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    record(ledger, volunteer, activity, at(9), at(10))
    head = ledger.head()
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "elsewhere.pem"))
    elsewhere = Ledger(ledger.settings)
    try:
        with pytest.raises(ConfigurationError, match=r"elsewhere\.pem"):
            record(elsewhere, volunteer, activity, at(10), at(11))
        assert not (tmp_path / "elsewhere.pem").exists()  # no key made for a sealed store
        assert elsewhere.head() == head
    finally:
        elsewhere.close()
    assert models.catch_up() == head


def test_the_sweep_and_verify_name_an_event_appended_by_hand(open_ledger: Opener,
                                                             tmp_path: Path) -> None:
    """The log stops before it; the server's sweep (and `vledger verify` where the key is)
    names it, as an event the ledger did not write."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    _, forged = _copy_of_session(ledger, models, session.position)
    auditor = Auditor(models.store, SigningKey.load(tmp_path / "signing-key.pem"))

    report = verify_log(ledger.recorder, auditor, None, seals=ledger.seals)
    swept = Sweeper(ledger.recorder, auditor, 60).sweep()

    assert report.unsealed == [forged] and not report.ok
    assert [c.name for c in report.checks if not c.ok] == ["seals"]
    assert swept.altered == 1 and swept.first_altered == (forged,) and not swept.ok
    assert f"position(s) {forged})" in swept.detail
    # Without the key (an outside auditor) the seals are not checked, and not claimed.
    assert "seals" not in {c.name for c in verify_log(ledger.recorder, auditor, None).checks}


def test_a_ledger_without_views_seals_its_snapshots_for_the_server(
        settings: Settings, open_ledger: Opener) -> None:
    """`vledger demo` and `vledger tokens` run a ledger without views: its snapshots carry the
    MAC a server checks, so the server does not pass them over and replay (a carried item of
    stop 24)."""
    plain = Ledger(settings.model_copy(update={"snapshot_interval": 3}))
    try:
        plain.ensure_catalogue()
        volunteer, activity = make_volunteer(plain), make_activity(plain)
        for hour in (9, 10, 11):
            record(plain, volunteer, activity, at(hour), at(hour + 1))
        assert plain.snapshots is not None
        (snapshot,) = plain.snapshots.recorder.select_events(volunteer, desc=True, limit=1)
        assert b',"mac":"' in bytes(snapshot.state)
    finally:
        plain.close()
    server, _ = open_ledger()
    assert volunteer in server._get_many(Volunteer, [volunteer])  # as a write's load does

    assert not server._loader.unvouched and not server.refused_snapshots()
