"""Phone and id numbers are stored sealed under keys of their own, and erased by deleting the
key when withdrawn or replaced (ledger/sealing.py): the events never change, the numbers go."""

from __future__ import annotations

import base64
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger, Settings
from ledger.base import Recognised
from ledger.errors import ClosedReference, KeyReused
from ledger.sealing import ERASED, KEYS_TABLE, KeyChanges, alike, open_value
from ledger.volunteers import Volunteer
from projections.audit import Auditor
from projections.history import event_feed
from projections.signing import SigningKey
from projections.verification import verify_log
from tests.factories import (
    ADMIN,
    audit_runner,
    lands_before_next_save,
    make_unit,
    sent_again_meanwhile,
)

PHONE, NEW_PHONE, ID_NUMBER = "13812345678", "13987654321", "350402199001011234"
DAY = date(2017, 3, 5)


def stored_bytes(ledger: Ledger) -> bytes:
    return b"".join(n.state for n in ledger.recorder.select_notifications(1, 100_000))


def key_count(ledger: Ledger) -> int:
    """How many keys the store holds: one for each number stored and not erased."""
    datastore: Any = ledger.recorder.datastore  # type: ignore[attr-defined]
    schema = getattr(datastore, "schema", None)
    table = f'"{schema}".{KEYS_TABLE}' if schema else KEYS_TABLE
    with datastore.transaction(commit=False) as cur:
        cur.execute(f"SELECT COUNT(*) AS n FROM {table}")
        return int(cur.fetchone()["n"])


def register(ledger: Ledger, **personal: Any) -> str:
    return ledger.register_volunteer(ADMIN, "雷锋", make_unit(ledger), DAY, **personal)[0].id


def test_numbers_are_stored_sealed_and_read_back_whole(ledger: Ledger) -> None:
    volunteer_id = register(ledger, phone=PHONE, id_number=ID_NUMBER, gender="male")
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": NEW_PHONE})
    stored = stored_bytes(ledger)
    for number in (PHONE, NEW_PHONE, ID_NUMBER):
        assert number.encode() not in stored
    assert b"male" in stored  # only the two numbers are sealed
    personal = ledger.personal_of(ledger.get_volunteer(volunteer_id))
    assert personal == {"phone": NEW_PHONE, "id_number": ID_NUMBER, "gender": "male"}


def test_a_withdrawn_number_is_erased_from_every_event_that_held_it(ledger: Ledger) -> None:
    volunteer_id = register(ledger, phone=PHONE, id_number=ID_NUMBER)
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": NEW_PHONE})
    before = stored_bytes(ledger)
    assert key_count(ledger) == 2  # the first phone's key went with its replacement
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": None})

    assert key_count(ledger) == 1
    assert stored_bytes(ledger).startswith(before)  # no stored event changed
    feed = event_feed(ledger.recorder, 0, 100, unmasked=True)
    registered = next(e for e in feed if e["type"] == "Volunteer.Registered")
    changes = [e["data"]["changes"] for e in feed if e["type"] == "Volunteer.PersonalDataUpdated"]
    assert registered["data"]["personal"] == {"phone": ERASED, "id_number": ID_NUMBER}
    assert changes == [{"phone": ERASED}, {"phone": None}]
    assert ledger.personal_of(ledger.get_volunteer(volunteer_id)) == {"id_number": ID_NUMBER}
    masked = event_feed(ledger.recorder, 0, 100)
    assert next(e for e in masked if e["type"] == "Volunteer.Registered")["data"]["personal"] \
        == {"phone": ERASED, "id_number": "3****************4"}


def test_an_erased_store_still_verifies(ledger: Ledger, tmp_path: Path) -> None:
    views = audit_runner(ledger)
    try:
        volunteer_id = register(ledger, phone=PHONE, id_number=ID_NUMBER)
        views.catch_up()
        key = SigningKey.load(tmp_path / "signing-key.pem")
        auditor = Auditor(views.store, key)
        root = auditor.root(auditor.size())
        ledger.update_volunteer(ADMIN, volunteer_id, {"phone": None, "id_number": None})
        views.catch_up()
        assert auditor.root(auditor.size() - 1) == root
        report = verify_log(ledger.recorder, auditor, key.public_key_pem(), sign=True)
        assert report.ok, [c for c in report.checks if not c.ok]
        assert key_count(ledger) == 0
    finally:
        views.store.close()


def test_a_write_that_loses_a_race_stores_none_of_its_keys(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write is checked, another registration takes the next volunteer number first, the
    write's insert fails and it is tried again, sealing anew: the failed try's keys are rolled
    back with its events, so each stored number has one key and no key is left over."""
    unit_id = make_unit(ledger)
    ran = lands_before_next_save(ledger, monkeypatch, lambda: ledger.register_volunteer(
        ADMIN, "张三", unit_id, DAY, phone="13700000000"))
    first = ledger.register_volunteer(ADMIN, "雷锋", unit_id, DAY, phone=PHONE)[0].id
    assert ran
    assert key_count(ledger) == 2
    assert ledger.personal_of(ledger.get_volunteer(first)) == {"phone": PHONE}


def test_a_write_refused_in_its_insert_stores_no_key(ledger: Ledger,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    volunteer_id = register(ledger, phone=PHONE)
    keys_before = key_count(ledger)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the store refused the insert")

    monkeypatch.setattr(ledger, "_store", refused)  # where a save inserts its events
    with pytest.raises(RuntimeError):
        ledger.update_volunteer(ADMIN, volunteer_id, {"phone": NEW_PHONE})
    monkeypatch.undo()
    assert key_count(ledger) == keys_before
    assert ledger.personal_of(ledger.get_volunteer(volunteer_id)) == {"phone": PHONE}


def test_an_update_to_the_same_number_keeps_its_key(ledger: Ledger) -> None:
    volunteer_id = register(ledger, phone=PHONE)
    head = ledger.head()
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": PHONE})
    assert ledger.head() == head and key_count(ledger) == 1


def test_a_keyed_registration_sent_again_is_recognised_though_sealed_anew(
        ledger: Ledger) -> None:
    unit_id = make_unit(ledger)

    def send(phone: str) -> Any:
        return ledger.keyed(
            "clerk\x00k-1",
            lambda: ledger.register_volunteer(ADMIN, "雷锋", unit_id, DAY, phone=phone),
            "vol", lambda: ledger.volunteer_fields("雷锋", unit_id, DAY, {"phone": phone}))

    first = send(PHONE)[0]
    again = send(PHONE)
    assert isinstance(again, Recognised) and again.id == first.id
    with pytest.raises(KeyReused):
        send(NEW_PHONE)


def test_two_sends_of_a_keyed_registration_at_once_register_once(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second send's pending event is sealed with keys of its own: it is compared with the
    stored one as plain text."""
    unit_id = make_unit(ledger)

    def register_one() -> Any:
        return ledger.register_volunteer(ADMIN, "雷锋", unit_id, DAY, phone=PHONE)

    raced = sent_again_meanwhile(ledger, monkeypatch,
                                 lambda: ledger.keyed("clerk\x00k-1", register_one))
    second = ledger.keyed("clerk\x00k-1", register_one)
    assert isinstance(second, Recognised) and second.id == raced[0][0].id
    assert key_count(ledger) == 1


def test_events_stored_before_sealing_read_as_they_are(ledger: Ledger) -> None:
    """A registration stored with plain numbers (before sealing existed) reads as stored; its
    stored bytes are shown only to callers who may see the numbers whole."""
    unit_id = make_unit(ledger)
    plain = Volunteer(  # type: ignore[call-arg]
        name="雷锋", home_unit_id=unit_id, registered_on=DAY.isoformat(),
        volunteer_number="V-OLD", personal={"phone": PHONE}, id="vol-plain",
        **ADMIN.meta())
    ledger._save(plain)
    assert ledger.personal_of(ledger.get_volunteer("vol-plain")) == {"phone": PHONE}
    ledger.update_volunteer(ADMIN, "vol-plain", {"phone": NEW_PHONE})
    assert ledger.personal_of(ledger.get_volunteer("vol-plain")) == {"phone": NEW_PHONE}
    masked = event_feed(ledger.recorder, 0, 100)
    old = next(e for e in masked if e["type"] == "Volunteer.Registered")
    new = next(e for e in masked if e["type"] == "Volunteer.PersonalDataUpdated")
    assert old["state"] is None and old["data"]["personal"] == {"phone": "138****5678"}
    assert new["state"] is not None
    clear = event_feed(ledger.recorder, 0, 100, unmasked=True)
    assert PHONE in base64.b64decode(clear[old["position"] - 1]["state"]).decode()


def test_a_box_opens_only_under_its_own_key() -> None:
    changes = KeyChanges()
    first, second = changes.seal(PHONE), changes.seal(NEW_PHONE)
    assert open_value(first, changes.added) == PHONE
    swapped = {"sealed": second["sealed"], "box": first["box"]}
    with pytest.raises(Exception):  # noqa: B017 (cryptography's InvalidTag)
        open_value(swapped, changes.added)
    assert open_value(first, {}) == ERASED


def test_an_erased_number_is_alike_to_any() -> None:
    assert alike({"personal": {"phone": ERASED, "gender": "male"}},
                 {"personal": {"phone": PHONE, "gender": "male"}})
    assert not alike({"personal": {"phone": ERASED, "gender": "male"}},
                     {"personal": {"phone": PHONE, "gender": "female"}})
    assert not alike({"personal": {"phone": PHONE}}, {"personal": {"phone": NEW_PHONE}})


def sqlite_ledger_with_keys(path: Path) -> tuple[Ledger, list[str]]:
    ledger = Ledger(Settings(database_url=f"sqlite:///{path}"))
    unit_id = make_unit(ledger)
    return ledger, [ledger.register_volunteer(ADMIN, "雷锋", unit_id, DAY,
                                              phone=f"138000000{i:02d}")[0].id
                    for i in range(40)]


def key_of(ledger: Ledger, volunteer_id: str) -> tuple[dict[str, str], bytes]:
    """A volunteer's sealed phone, and its key's bytes as the table stores them (wrapped)."""
    sealed = ledger.get_volunteer(volunteer_id).personal["phone"]
    with ledger.recorder.datastore.transaction(commit=False) as cur:  # type: ignore[attr-defined]
        cur.execute(f"SELECT key FROM {KEYS_TABLE} WHERE key_id = ?", (sealed["sealed"],))
        return sealed, bytes(cur.fetchone()["key"])


def files(path: Path) -> bytes:
    """The database file and its WAL, as a copy of them would hold."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_an_erased_key_leaves_no_trace_in_the_sqlite_files(tmp_path: Path) -> None:
    """The key's bytes are overwritten in the database file, not only unlinked
    (secure_delete), and the WAL, which held the page before, is truncated by the erasing
    write itself (bb21 F2: on a quiet ledger it kept the key until some later checkpoint)."""
    path = tmp_path / "ledger.db"
    ledger, ids = sqlite_ledger_with_keys(path)
    try:
        sealed, key = key_of(ledger, ids[20])
        assert key in files(path)
        ledger.update_volunteer(ADMIN, ids[20], {"phone": None})
        assert key not in files(path)
        assert open_value(sealed, ledger.recorder.select_keys(  # type: ignore[attr-defined]
            {sealed["sealed"]})) == ERASED
    finally:
        ledger.close()


def erased_under_a_reader(ledger: Ledger, path: Path, volunteer_id: str
                          ) -> tuple[bytes, sqlite3.Connection]:
    """Withdraw a volunteer's phone while another connection (the API's other worker, a
    projections worker) holds a read snapshot, so the WAL cannot be truncated then; the
    reader then lets go, but stays open. The erased key, and the reader to close."""
    _, key = key_of(ledger, volunteer_id)
    other = sqlite3.connect(path)
    other.execute("BEGIN")
    other.execute("SELECT COUNT(*) FROM personal_keys").fetchone()
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": None})
    other.rollback()
    return key, other


def test_a_reader_holding_the_wal_delays_its_truncation_to_a_later_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes in the pause after a truncation that readers held up do not wait again; the
    first one after it truncates."""
    path = tmp_path / "ledger.db"
    ledger, ids = sqlite_ledger_with_keys(path)
    key, other = erased_under_a_reader(ledger, path, ids[5])
    try:
        assert key in files(path)  # the reader's snapshot still needed the WAL
        ledger.update_volunteer(ADMIN, ids[6], {"gender": "male"})  # within the pause
        assert key in files(path)
        monkeypatch.setattr(ledger.recorder, "_next_try", 0.0)  # the pause is over
        ledger.update_volunteer(ADMIN, ids[6], {"gender": "female"})
        assert key not in files(path)
    finally:
        other.close()
        ledger.close()


def test_closing_the_ledger_truncates_a_wal_still_holding_erased_keys(tmp_path: Path) -> None:
    """The other connection stays open, so SQLite's own checkpoint when the last connection
    closes does not come: the ledger's close truncates the WAL."""
    path = tmp_path / "ledger.db"
    ledger, ids = sqlite_ledger_with_keys(path)
    key, other = erased_under_a_reader(ledger, path, ids[7])
    try:
        ledger.close()
        assert key not in files(path)
    finally:
        other.close()


def test_a_deregistered_volunteer_may_still_withdraw_numbers_and_nothing_else(
        ledger: Ledger) -> None:
    """bb21 F1: after deregistration every change was refused, withdrawals too, so a volunteer
    who had left could never have their numbers erased."""
    volunteer_id = register(ledger, phone=PHONE, id_number=ID_NUMBER)
    ledger.deregister_volunteer(ADMIN, volunteer_id, date(2017, 7, 1), "moved away")
    with pytest.raises(ClosedReference) as refused:
        ledger.update_volunteer(ADMIN, volunteer_id, {"phone": NEW_PHONE})
    assert "only a phone or id number may be withdrawn" in str(refused.value)
    with pytest.raises(ClosedReference):
        ledger.update_volunteer(ADMIN, volunteer_id, {"phone": None, "gender": "male"})
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": None, "id_number": None})
    assert ledger.personal_of(ledger.get_volunteer(volunteer_id)) == {}
    assert key_count(ledger) == 0
    head = ledger.head()
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": None})  # withdrawn already
    assert ledger.head() == head
