"""The keys of sealed numbers are stored wrapped under a KEK kept in a file outside the
database (ledger/keks.py), which a rotation replaces (ledger/keyrotation.py)."""

from __future__ import annotations

import base64
import os
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger import Ledger, Settings
from ledger.keks import KekFile, KekMissing, KeyRing
from ledger.keytable import KeyTable
from ledger.sealing import ERASED, open_value
from projections.history import event_feed
from tests.factories import ADMIN, make_unit

PHONE, ID_NUMBER = "13812345678", "350402199001011234"
DAY = date(2017, 3, 5)
KeyRow = tuple[str, bytes, "str | None"]


def register(ledger: Ledger, unit_id: str, phone: str = PHONE, **personal: Any) -> str:
    return ledger.register_volunteer(ADMIN, "雷锋", unit_id, DAY, phone=phone,
                                     **personal)[0].id


def table(ledger: Ledger) -> KeyTable:
    return KeyTable(ledger.recorder, ledger.settings.store().kind == "postgres")


def key_rows(ledger: Ledger) -> dict[str, KeyRow]:
    """`personal_keys` as a copy of the database holds it: key id, stored bytes, KEK id."""
    keys = table(ledger)
    with ledger.recorder.datastore.transaction(commit=False) as cur:  # type: ignore[attr-defined]
        cur.execute(f"SELECT key_id, key, kek_id FROM {keys.keys}")
        return {r["key_id"]: (r["key_id"], bytes(r["key"]), r["kek_id"]) for r in cur.fetchall()}


def phone_of(ledger: Ledger, volunteer_id: str) -> Any:
    return ledger.personal_of(ledger.get_volunteer(volunteer_id)).get("phone")


def sealed_phone(ledger: Ledger, volunteer_id: str) -> dict[str, str]:
    sealed: dict[str, str] = ledger.get_volunteer(volunteer_id).personal["phone"]
    return sealed


def test_the_keys_table_holds_no_data_key_in_plain(ledger: Ledger) -> None:
    volunteer_id = register(ledger, make_unit(ledger), id_number=ID_NUMBER)
    sealed = sealed_phone(ledger, volunteer_id)
    key_id, stored, kek_id = key_rows(ledger)[sealed["sealed"]]
    assert kek_id == ledger.kek_status().current
    with pytest.raises((InvalidTag, ValueError)):  # the stored bytes are no key of the box
        open_value(sealed, {key_id: stored})
    assert phone_of(ledger, volunteer_id) == PHONE


def test_numbers_still_read_after_a_restart(settings: Settings) -> None:
    first = Ledger(settings)
    volunteer_id = register(first, make_unit(first), id_number=ID_NUMBER)
    first.close()
    again = Ledger(settings)
    try:
        assert again.personal_of(again.get_volunteer(volunteer_id)) == {
            "phone": PHONE, "id_number": ID_NUMBER}
    finally:
        again.close()


def test_a_rotation_rewraps_every_key_and_erased_numbers_stay_erased(settings: Settings) -> None:
    server, cli = Ledger(settings), Ledger(settings)  # the CLI rotates beside a running server
    try:
        unit_id = make_unit(server)
        ids = [register(server, unit_id, f"1380000000{i}") for i in range(5)]
        server.update_volunteer(ADMIN, ids[2], {"phone": None})
        old = server.kek_status().current
        done = cli.rotate_keks()
        assert done.old == [old] and done.new != old and done.rewrapped == 4
        state = cli.kek_status()
        assert state.current == done.new and state.keys == {done.new: 4}
        assert state.in_file == [done.new]
        for reader in (server, cli):  # the server loads the new KEK from the file, by id
            assert [phone_of(reader, i) for i in ids] == [
                "13800000000", "13800000001", None, "13800000003", "13800000004"]
        feed = event_feed(server.recorder, 0, 100, unmasked=True)
        registered = [e for e in feed if e["type"] == "Volunteer.Registered"]
        assert registered[2]["data"]["personal"]["phone"] == ERASED
    finally:
        server.close()
        cli.close()


def test_a_rotation_and_a_start_go_through_the_keys_page_by_page(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ledger.keytable.PAGE", 2)
    ledger = Ledger(settings)
    unit_id = make_unit(ledger)
    ids = [register(ledger, unit_id, f"1380000000{i}") for i in range(5)]
    assert ledger.rotate_keks().rewrapped == 5
    as_before_keks(ledger)
    ledger.close()
    again = Ledger(settings)
    try:
        current = again.kek_status().current
        assert again.kek_status().keys == {current: 5}
        assert [phone_of(again, i) for i in ids] == [f"1380000000{i}" for i in range(5)]
    finally:
        again.close()


def test_a_backup_taken_before_an_erasure_with_the_kek_after_a_rotation_opens_nothing(
        ledger: Ledger) -> None:
    """The point of the KEK (bb21 F3): without the rotation the backup and the KEK file open
    the erased number; after it, the KEK its key was wrapped under exists nowhere."""
    volunteer_id = register(ledger, make_unit(ledger))
    sealed = sealed_phone(ledger, volunteer_id)
    backup = key_rows(ledger)[sealed["sealed"]]
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": None})
    assert phone_of(ledger, volunteer_id) is None

    def opened_from_backup() -> str:
        ring = KeyRing(ledger.key_ring.path, lambda: None)  # a fresh process: the file alone
        key_id, wrapped, kek_id = backup
        return str(open_value(sealed, {key_id: ring.unwrap(key_id, kek_id, wrapped)}))

    assert opened_from_backup() == PHONE  # what a rotation is for
    ledger.rotate_keks()
    with pytest.raises(KekMissing):
        opened_from_backup()
    for kek in KekFile(ledger.key_ring.path).read().values():  # nor under any KEK there is
        with pytest.raises(InvalidTag):
            AESGCM(kek).decrypt(backup[1][:12], backup[1][12:], backup[0].encode())


def test_a_write_after_a_rotation_elsewhere_is_stored_under_the_new_kek(
        settings: Settings) -> None:
    """The server still takes the old KEK as current; its first write is refused inside its
    transaction (the old KEK's row is gone) and runs again, without an error to the caller."""
    server, cli = Ledger(settings), Ledger(settings)
    try:
        unit_id = make_unit(server)
        register(server, unit_id, "13800000001")
        new = cli.rotate_keks().new
        volunteer_id = register(server, unit_id, "13800000002")
        assert {row[2] for row in key_rows(cli).values()} == {new}
        assert phone_of(cli, volunteer_id) == "13800000002"
    finally:
        server.close()
        cli.close()


def test_a_write_during_a_rotation_under_the_old_kek_is_rewrapped_before_it_is_deleted(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored under the old KEK after the rotation's pages passed it, while the old KEK is
    still listed: the rotation's last step, with writers held, wraps it again."""
    server, cli = Ledger(settings), Ledger(settings)
    written: list[str] = []
    pages = KeyTable.rewrap_all

    def then_a_write(keys: KeyTable, ring: KeyRing, kek_ids: Any, cur: Any = None) -> int:
        done = pages(keys, ring, kek_ids, cur)
        if cur is None and not written:
            written.append(register(server, unit_id, "13800000002"))
        return done

    try:
        unit_id = make_unit(server)
        register(server, unit_id, "13800000001")
        monkeypatch.setattr(KeyTable, "rewrap_all", then_a_write)
        done = cli.rotate_keks()
        assert done.late == 1 and done.rewrapped == 1
        assert {row[2] for row in key_rows(cli).values()} == {done.new}
        assert phone_of(cli, written[0]) == "13800000002"
    finally:
        server.close()
        cli.close()


def test_writes_racing_rotations_all_land_under_the_last_kek(settings: Settings) -> None:
    server, cli = Ledger(settings), Ledger(settings)
    errors: list[BaseException] = []
    ids: list[str] = []
    try:
        unit_id = make_unit(server)

        def write(first: int) -> None:
            try:
                ids.extend(register(server, unit_id, f"139{first + i:08d}") for i in range(25))
            except BaseException as error:  # reported below
                errors.append(error)

        writers = [threading.Thread(target=write, args=(n * 100,)) for n in range(2)]
        for thread in writers:
            thread.start()
        last = [cli.rotate_keks().new for _ in range(3)][-1]
        for thread in writers:
            thread.join()
        assert not errors, errors
        assert len(ids) == 50
        assert {row[2] for row in key_rows(cli).values()} == {last}
        assert all(phone_of(cli, i) is not None for i in ids)
    finally:
        server.close()
        cli.close()


def test_a_store_whose_kek_file_is_missing_refuses_to_start(settings: Settings) -> None:
    ledger = Ledger(settings)
    register(ledger, make_unit(ledger))
    path, kek_id = ledger.key_ring.path, ledger.kek_status().current
    ledger.close()
    path.rename(path.with_name("elsewhere"))
    with pytest.raises(KekMissing) as refused:
        Ledger(settings)
    assert str(path) in str(refused.value) and str(kek_id) in str(refused.value)
    assert not path.exists()  # no new KEK made: it would open nothing of the store


def test_a_new_store_makes_its_kek_file_private(settings: Settings) -> None:
    ledger = Ledger(settings)
    try:
        path = ledger.key_ring.path
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert list(KekFile(path).read()) == [ledger.kek_status().current]
    finally:
        ledger.close()


def as_before_keks(ledger: Ledger) -> None:
    """Turn a store back into one written before KEKs: plain keys, no KEK table, no file."""
    keys = table(ledger)
    plain = [(key_id, ledger.key_ring.unwrap(key_id, kek_id, wrapped))
             for key_id, wrapped, kek_id in key_rows(ledger).values()]
    blob = "bytea" if keys.postgres else "BLOB"
    with ledger.recorder.datastore.transaction(commit=True) as cur:  # type: ignore[attr-defined]
        cur.execute(f"DROP TABLE {keys.keys}")
        cur.execute(f"DROP TABLE {keys.keks}")
        cur.execute(f"CREATE TABLE {keys.keys} (key_id text PRIMARY KEY, key {blob} NOT NULL)")
        for row in plain:
            cur.execute(keys._sql(f"INSERT INTO {keys.keys} (key_id, key) VALUES (?, ?)"), row)
    ledger.key_ring.path.unlink()


def test_an_older_store_with_plain_keys_is_wrapped_on_first_open(settings: Settings) -> None:
    ledger = Ledger(settings)
    unit_id = make_unit(ledger)
    ids = [register(ledger, unit_id, f"1380000000{i}") for i in range(3)]
    as_before_keks(ledger)
    ledger.close()
    again = Ledger(settings)
    try:
        current = again.kek_status().current
        rows = key_rows(again)
        assert len(rows) == 3 and {row[2] for row in rows.values()} == {current}
        assert [phone_of(again, i) for i in ids] == [f"1380000000{i}" for i in range(3)]
        sealed = sealed_phone(again, ids[0])
        with pytest.raises((InvalidTag, ValueError)):
            open_value(sealed, {sealed["sealed"]: rows[sealed["sealed"]][1]})
    finally:
        again.close()


def test_a_kek_file_line_whose_key_is_not_its_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.kek"
    path.write_text(f"0123456789abcdef {base64.b64encode(bytes(32)).decode()}\n")
    with pytest.raises(ValueError, match="line 1"):
        KekFile(path).read()


def test_a_ledger_that_opens_no_number_neither_checks_nor_makes_a_kek(
        settings: Settings) -> None:
    """`vledger verify` needs nothing secret: an auditor without the KEK file verifies, and no
    KEK file is made where there was none."""
    ledger = Ledger(settings)
    register(ledger, make_unit(ledger))
    path = ledger.key_ring.path
    ledger.close()
    path.rename(path.with_name("elsewhere"))
    auditor = Ledger(settings, check_keks=False)
    try:
        assert auditor.head() > 0
    finally:
        auditor.close()
    assert not path.exists()
