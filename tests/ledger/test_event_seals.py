"""Every event the ledger writes carries a seal only the signing key can make (bb38 F2): an
event appended to the store by hand, well-formed or not, is taken in by no view, built on by
no write and served by no feed; the start of sealing cannot be moved or deleted to pass such an
event off as an older, unsealed one (ledger/eventseals.py)."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger, Settings
from ledger.errors import AuditLogAltered, StoreAltered
from ledger.eventseals import LABEL, SEALS_TABLE, leaf_bytes
from ledger.settings import ConfigurationError
from ledger.signingkey import derive_key, load_private_key
from ledger.volunteers import Volunteer
from projections.audit import Auditor, refuse_unsealed, unsealed_events
from projections.history import event_feed
from projections.models import ReadModels, auditor_views
from projections.signing import SigningKey
from projections.sweep import Sweeper
from projections.verification import seal_logged, verify_log
from projections.vouching import vouch_for
from tests.factories import ADMIN, at, make_activity, make_volunteer, record

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
            if not sealed:  # a ledger, and views, of a version before seals
                ledger.recorder.seals = None  # type: ignore[attr-defined]
                ledger.seals = None  # type: ignore[assignment]
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


def _auditor(models: ReadModels, tmp_path: Path) -> Auditor:
    return Auditor(models.store, SigningKey.load(tmp_path / "signing-key.pem"))


def _recorded_and_signed(open_ledger: Opener, tmp_path: Path) -> tuple[
        Ledger, ReadModels, str, str, Any]:
    """A ledger with a volunteer's session, its views caught up and a checkpoint signed over
    them by a signer that checks seals: (ledger, views, volunteer, activity, session)."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    auditor = _auditor(models, tmp_path)
    auditor.sealing(ledger.recorder, ledger.seals)
    auditor.checkpoint()
    return ledger, models, volunteer, activity, session


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


def test_a_seal_is_the_hmac_sha256_of_the_leaf_under_the_store_s_key_cut_to_16_bytes(
        open_ledger: Opener) -> None:
    """The seal's bytes, made here with `hmac` itself: the recorders' faster MAC (the key's
    pads hashed once) must make the same ones, under the key derived for this store's id."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    record(ledger, volunteer, activity, at(9), at(10))
    store_id = ledger.recorder.store_id()  # type: ignore[attr-defined]
    assert store_id is not None
    key = derive_key(load_private_key(ledger.seals.key_file),
                     LABEL + b"\x00" + store_id.encode("ascii"))
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


def test_a_store_written_before_seals_is_sealed_by_vledger_seal_but_not_what_the_log_lacks(
        open_ledger: Opener, tmp_path: Path) -> None:
    """An upgraded store: its events carry no seal. A server does not start on it until
    `vledger seal` seals the events the audit log took in; an event appended by hand before
    the upgrade (past the log) is never sealed, and no view counts it (bb39 F2)."""
    old, old_views = open_ledger(sealed=False)
    volunteer, activity = make_volunteer(old), make_activity(old)
    session = record(old, volunteer, activity, at(9), at(10))
    old_views.catch_up()
    logged = old.head()
    _auditor(old_views, tmp_path).checkpoint()  # before upgrading, as the README says
    _, forged = _copy_of_session(old, old_views, session.position)
    ledger, models = open_ledger()

    said = unsealed_events(models.store, ledger.recorder, ledger.seals)
    with pytest.raises(AuditLogAltered, match=f"position\\(s\\) {forged}\\)"):
        models.catch_up()  # what the log took in stays; the forged event is not taken in
    done = seal_logged(ledger.recorder, _auditor(models, tmp_path), ledger.seals)

    assert said is not None and f"{forged} stored event(s) carry no seal" in said
    assert "`vledger seal`" in said
    assert (done.sealed, done.unlogged) == (logged, [forged])
    assert unsealed_events(models.store, ledger.recorder, ledger.seals) is not None  # forged
    table, column = _table(ledger)
    with models.store.transaction() as cur:
        cur.execute(f"DELETE FROM {table} WHERE {column} = ?", (forged,))
    assert unsealed_events(models.store, ledger.recorder, ledger.seals) is None
    record(ledger, volunteer, activity, at(10), at(11))
    assert models.catch_up() == ledger.head() and _minutes(models, volunteer) == 120
    assert _seal_count(models) == ledger.events_up_to(ledger.head())  # every event stored
    # Sealed once, every event stands on its own: the audit log can be rebuilt from 0.
    assert models.runner.rebuild(["audit"]) == ledger.head()


def test_deleting_every_seal_passes_no_event_written_by_hand_off_as_an_old_one(
        open_ledger: Opener, tmp_path: Path) -> None:
    """bb39 F1: the seals (and the start of sealing, and its file) deleted made the store
    look unsealed, and a forged session was counted. There is no start now: every event
    needs its seal, and `vledger seal` seals only what the log took in."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    _auditor(models, tmp_path).checkpoint()
    _, forged = _copy_of_session(ledger, models, session.position)
    with models.store.transaction() as cur:
        cur.execute(f"DELETE FROM {SEALS_TABLE}")
    restarted, views = open_ledger()  # a new process

    with pytest.raises(AuditLogAltered, match=f"position\\(s\\) {forged}\\)"):
        views.catch_up()
    assert _minutes(views, volunteer) == 60
    assert unsealed_events(views.store, restarted.recorder, restarted.seals) is not None
    done = seal_logged(restarted.recorder, _auditor(views, tmp_path), restarted.seals)
    assert done.unlogged == [forged] and done.sealed == forged - 1
    with pytest.raises(AuditLogAltered, match=f"position\\(s\\) {forged}\\)"):
        views.catch_up()


def test_vledger_seal_does_not_seal_what_the_log_took_in_after_its_last_checkpoint(
        open_ledger: Opener, tmp_path: Path) -> None:
    """bb40 F1: the operator ran the previous release (which checks no seal) on the store:
    its audit view took a forged session in. `vledger seal`, as the message advised, sealed
    it, and it was counted and signed. Only what a signed checkpoint vouches for is sealed."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    _auditor(models, tmp_path).checkpoint()
    _, forged = _copy_of_session(ledger, models, session.position)
    _older, older_views = open_ledger(sealed=False)  # the previous release, on the same store
    assert older_views.catch_up() == forged  # its audit log takes the forgery in
    with models.store.transaction() as cur:
        cur.execute(f"DELETE FROM {SEALS_TABLE} WHERE position > ?", (session.position - 2,))

    report = verify_log(ledger.recorder, _auditor(models, tmp_path), None, seals=ledger.seals)

    detail = next(c.detail for c in report.checks if c.name == "seals")
    assert "after its last signed checkpoint carry no seal" in detail
    assert "`vledger seal` does not seal them" in detail
    # A store written by this version is not sealed again at all (bb42 F2): what lost its
    # seals comes back from a backup of event_seals.
    with pytest.raises(AuditLogAltered, match="this store was written by this version"):
        seal_logged(ledger.recorder, _auditor(models, tmp_path), ledger.seals)
    assert unsealed_events(models.store, ledger.recorder, ledger.seals) is not None


def test_seals_copied_from_another_store_of_the_same_key_seal_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb40 F2: two stores shared one key (PostgreSQL's default serves every schema); a
    session and its seal copied from one into the other, at the same position, were counted.
    The seal key is derived for each store's own random id."""
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "signing-key.pem"))
    opened = []
    try:
        for name in ("a", "b"):
            ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path / name}.db"))
            opened.append(ledger)
            ledger.ensure_catalogue()
            make_volunteer(ledger), make_activity(ledger)
        a, b = opened
        models = ReadModels(a, extra=auditor_views())
        try:
            models.catch_up()
            assert a.head() == b.head()
            volunteer = make_volunteer(b)
            written = record(b, volunteer, make_activity(b), at(9), at(10)).position
            [event] = b.recorder.select_notifications(written, 1)
            datastore = b.recorder.datastore  # type: ignore[attr-defined]
            with datastore.transaction(commit=False) as c:
                c.execute(f"SELECT mac FROM {SEALS_TABLE} WHERE position = ?", (written,))
                mac = c.fetchone()[0]
            with models.store.transaction() as cur:
                cur.execute("INSERT INTO stored_events (rowid, originator_id, originator_version,"
                            " topic, state) VALUES (?, ?, ?, ?, ?)", (
                                written, str(event.originator_id), event.originator_version,
                                event.topic, bytes(event.state)))
                cur.execute(f"INSERT INTO {SEALS_TABLE} (position, mac) VALUES (?, ?)",
                            (written, bytes(mac)))
            with pytest.raises(AuditLogAltered, match=f"position\\(s\\) {written}\\)"):
                models.catch_up()
        finally:
            models.close()
    finally:
        for ledger in opened:
            ledger.close()


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
        assert not (tmp_path / "elsewhere.pem").exists()  # no key made for a store with events
        assert elsewhere.head() == head
    finally:
        elsewhere.close()
    SigningKey.load(tmp_path / "another.pem")  # another key: its seals would all be refused
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "another.pem"))
    another = Ledger(ledger.settings)
    try:
        with pytest.raises(ConfigurationError, match=r"was not sealed with the key in"):
            record(another, volunteer, activity, at(10), at(11))
        assert another.head() == head
    finally:
        another.close()
    assert models.catch_up() == head


def test_a_rebuild_is_refused_before_it_empties_a_view(open_ledger: Opener,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """bb39 F5: `vledger projections rebuild hours` with an event appended by hand emptied
    the hours view, then failed half way; every hours read answered 503 until it was
    deleted."""
    from typer.testing import CliRunner

    from projections.cli import app

    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    _, forged = _copy_of_session(ledger, models, session.position)
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)

    result = CliRunner().invoke(app, ["rebuild", "hours"])

    assert result.exit_code == 1, result.output
    assert "nothing was rebuilt" in result.output and f"position(s) {forged})" in result.output
    assert _minutes(models, volunteer) == 60  # the view as it was


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


def test_vledger_verify_checks_seals_where_the_key_is_and_says_what_failed(
        open_ledger: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb39 F3: with --public-key, run where the key is, the seals went unchecked and the
    forged events were called lag ("run the projections"). F4: a failure of the seals alone
    blamed a checkpoint. F6: an event the log vouches for whose seal row was lost was called
    one written by hand."""
    from typer.testing import CliRunner

    from projections.audit_cli import app

    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    key = SigningKey.load(tmp_path / "signing-key.pem")
    Auditor(models.store, key).checkpoint()
    public = tmp_path / "office.pem"
    public.write_text(key.public_key_pem())
    _, forged = _copy_of_session(ledger, models, session.position)
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)

    def verify() -> str:
        result = CliRunner().invoke(app, ["verify", "--public-key", str(public)])
        assert result.exit_code == 1, result.output
        return " ".join(result.output.split())

    said = verify()
    assert re.search(r"seals\W+MISMATCH", said) and f"position(s) {forged})" in said
    assert "run the projections" not in said and "checkpoint does not" not in said
    assert "written into the store, or changed there, by hand" in said
    table, column = _table(ledger)
    with models.store.transaction() as cur:
        cur.execute(f"DELETE FROM {table} WHERE {column} = ?", (forged,))
        cur.execute(f"DELETE FROM {SEALS_TABLE} WHERE position = ?", (session.position,))

    said = verify()
    assert f"have no seal (first at position(s) {session.position}), within the last signed" \
        in said
    assert "restore event_seals from a backup" in said and "by hand; no view" not in said


def test_a_last_sealed_event_stored_as_text_is_compared_as_its_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb40 F4 (SQLite: a column takes any type): the first write after a start answered
    500 (the check took the text for bytes), and the next went through unchecked. Its
    bytes are compared: the same bytes are the same event; others refuse every write."""
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "signing-key.pem"))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'text.db'}")
    ledger = Ledger(settings)
    try:
        ledger.ensure_catalogue()
        volunteer, activity = make_volunteer(ledger), make_activity(ledger)
        record(ledger, volunteer, activity, at(9), at(10))
        head = ledger.head()
        with ledger.recorder.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            c.execute("UPDATE stored_events SET state = CAST(state AS TEXT) WHERE rowid = ?",
                      (head,))
    finally:
        ledger.close()
    restarted = Ledger(settings)
    try:
        record(restarted, volunteer, activity, at(11), at(12))  # the same bytes: no 500
    finally:
        restarted.close()
    again = Ledger(settings)
    try:
        head = again.head()
        with again.recorder.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            c.execute("UPDATE stored_events SET state = REPLACE(CAST(state AS TEXT), 'T11', "
                      "'T07') WHERE rowid = ?", (head,))
        for hour in (13, 15):
            with pytest.raises(ConfigurationError, match="was not sealed with the key"):
                record(again, volunteer, activity, at(hour), at(hour + 1))
        assert again.head() == head
    finally:
        again.close()


def test_no_checkpoint_is_signed_over_and_no_write_built_on_an_event_another_process_logged(
        open_ledger: Opener, tmp_path: Path) -> None:
    """bb41 F1: the previous release, run on the store, took a forged booking into the audit
    log (and its views); the server signed a checkpoint over it on request, after which
    `vledger seal` sealed it, and writes built on it."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    auditor = _auditor(models, tmp_path)
    auditor.sealing(ledger.recorder, ledger.seals)
    signed = auditor.checkpoint()["tree_size"]
    versions = ledger._positions([volunteer])[volunteer]
    booking = _event(ledger, versions[max(versions)])
    version = max(versions) + 1
    forged = _append_by_hand(ledger, models, volunteer, version, booking.topic,
                             bytes(booking.state).replace(
                                 f'"originator_version":{version - 1}'.encode(),
                                 f'"originator_version":{version}'.encode()))
    _older, older_views = open_ledger(sealed=False)  # the previous release, on the same store
    assert older_views.catch_up() == forged

    with pytest.raises(AuditLogAltered, match=f"position\\(s\\) {forged}\\)"):
        auditor.checkpoint()
    restarted, _ = open_ledger()
    with pytest.raises(StoreAltered, match="no seal"):
        record(restarted, volunteer, activity, at(11), at(12))
    done = seal_logged(ledger.recorder, _auditor(models, tmp_path), ledger.seals)
    assert done.signed == signed and done.unsigned == [forged] and done.sealed == 0


def test_a_snapshot_of_another_store_of_the_same_key_is_not_vouched_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb41 F3: snapshot MACs were the key's alone; one copied from another store was built
    on. They are derived with each store's own id, as the event seals are."""
    from ledger.vouching import SNAPSHOT_KEY_LABEL, SnapshotSeal

    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "signing-key.pem"))
    keys, snapshots = [], []
    for name in ("a", "b"):
        ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path / name}.db",
                                 snapshot_interval=3))
        try:
            ledger.ensure_catalogue()
            volunteer, activity = make_volunteer(ledger), make_activity(ledger)
            for hour in (9, 10):
                record(ledger, volunteer, activity, at(hour), at(hour + 1))
            assert ledger.snapshots is not None
            (snapshot,) = ledger.snapshots.recorder.select_events(volunteer, desc=True, limit=1)
            snapshots.append(snapshot)
            keys.append(ledger.seals.derived(SNAPSHOT_KEY_LABEL))
        finally:
            ledger.close()
    a, b = (SnapshotSeal(k) for k in keys if k is not None)
    assert a.vouches(snapshots[0]) is True and b.vouches(snapshots[1]) is True
    assert a.vouches(snapshots[1]) is False and b.vouches(snapshots[0]) is False


def test_an_event_another_process_logged_is_dropped_by_deleting_it_and_rebuilding(
        open_ledger: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb41 F4: the one way out was SQL on the audit tables. The documented one: delete the
    events named, then `vledger projections rebuild`, which drops leaves no signature vouches
    for and counts the events as they are, each against its seal."""
    from typer.testing import CliRunner

    from projections.cli import app

    ledger, models, volunteer, activity, session = _recorded_and_signed(open_ledger, tmp_path)
    _, forged = _copy_of_session(ledger, models, session.position)
    _older, older_views = open_ledger(sealed=False)  # the previous release counts it
    assert older_views.catch_up() == forged and _minutes(models, volunteer) == 120  # counted
    said = unsealed_events(models.store, ledger.recorder, ledger.seals)
    assert said is not None and "other events are sealed" in said
    table, column = _table(ledger)
    with models.store.transaction() as cur:
        cur.execute(f"DELETE FROM {table} WHERE {column} = ?", (forged,))
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)

    refused = CliRunner().invoke(app, ["rebuild"])  # not without the operator's word
    result = CliRunner().invoke(app, ["rebuild", "--drop-unsigned"])

    assert refused.exit_code == 1 and "--drop-unsigned" in refused.output
    assert result.exit_code == 0, result.output
    assert "dropping the leaves of 1 event(s)" in " ".join(result.output.split())
    record(ledger, volunteer, activity, at(11), at(12))
    assert models.catch_up() == ledger.head() and _minutes(models, volunteer) == 120
    assert unsealed_events(models.store, ledger.recorder, ledger.seals) is None


def test_a_deleted_store_id_is_named_at_start_not_blamed_on_the_key(
        open_ledger: Opener) -> None:
    """bb41 F5: the server started, made a new id, and every write blamed the key."""
    ledger, models = open_ledger()
    make_volunteer(ledger)
    with models.store.transaction() as cur:
        cur.execute("DELETE FROM vledger_store")

    said = unsealed_events(models.store, ledger.recorder, ledger.seals)  # `vledger serve`

    assert said is not None and "its id (vledger_store) was deleted by hand" in said
    with pytest.raises(StoreAltered, match=r"its id \(vledger_store\) was deleted"):
        open_ledger()  # an API process


def test_a_copy_of_a_store_is_not_written_under_the_same_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb41 F2: a staging copy of a store (or a store given its id by hand), written under the
    same key, made events and seals the store accepted. The ids each store holds are kept
    beside the key; a second store with one of them is refused before it seals anything."""
    import shutil

    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "keys" / "signing-key.pem"))
    monkeypatch.setenv("VLEDGER_KEK_FILE", str(tmp_path / "keys" / "ledger.kek"))
    (tmp_path / "keys").mkdir()
    original = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}"))
    try:
        original.ensure_catalogue()
        make_volunteer(original)
    finally:
        original.close()
    shutil.copy(tmp_path / "a.db", tmp_path / "copy.db")
    copy = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'copy.db'}"))
    try:
        head = copy.head()
        with pytest.raises(ConfigurationError, match="has the id of another store"):
            make_volunteer(copy)
        assert copy.head() == head
    finally:
        copy.close()
    again = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}"))
    try:
        make_volunteer(again)  # the store itself goes on
    finally:
        again.close()


def test_a_sealed_event_deleted_after_the_last_checkpoint_is_not_dropped_by_a_rebuild(
        open_ledger: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb42 F1: the rebuild that drops the leaves of events named as unsealed also dropped a
    correction the ledger had written and sealed, deleted by hand after the last checkpoint
    (on PostgreSQL, a token's revocation). An event with the ledger's seal is never dropped."""
    from typer.testing import CliRunner

    from projections.cli import app

    ledger, models, volunteer, _activity, session = _recorded_and_signed(open_ledger, tmp_path)
    corrected = ledger.correct_session(ADMIN, session.id, at(9), at(9, 30), "late sheet")
    models.catch_up()
    table, column = _table(ledger)
    with models.store.transaction() as cur:
        cur.execute(f"DELETE FROM {table} WHERE {column} >= ?", (corrected.position - 1,))
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)

    result = CliRunner().invoke(app, ["rebuild", "--drop-unsigned"])

    assert result.exit_code == 1, result.output
    assert "the ledger sealed the event(s)" in " ".join(result.output.split())
    assert _minutes(models, volunteer) == 30  # the views as they were


def test_vledger_seal_seals_nothing_in_a_store_its_writes_sealed(
        open_ledger: Opener, tmp_path: Path) -> None:
    """bb42 F2: an older version, run on the store with the key, took a forged token in and
    signed a checkpoint over it; `vledger seal` then sealed it. A store written by this
    version (its writes' seals, in a domain of their own) is not sealed again."""
    ledger, models = open_ledger()
    volunteer, activity = make_volunteer(ledger), make_activity(ledger)
    session = record(ledger, volunteer, activity, at(9), at(10))
    models.catch_up()
    _, forged = _copy_of_session(ledger, models, session.position)
    _older, older_views = open_ledger(sealed=False)
    older_views.catch_up()
    _auditor(older_views, tmp_path).checkpoint()  # the older version signs, with the key

    with pytest.raises(AuditLogAltered, match=f"position\\(s\\) {forged} carry none"):
        seal_logged(ledger.recorder, _auditor(models, tmp_path), ledger.seals)
    said = unsealed_events(models.store, ledger.recorder, ledger.seals)  # `vledger serve`
    assert said is not None and "other events are sealed" in said
