"""The checkpoint kept beside the signing key: deleting the published one does not start a new
history (bb38 F11)."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import AuditLogAltered
from ledger.settings import StoreLocation
from projections.audit import Auditor, SigningKey, unextended_checkpoint, unkept_checkpoint
from projections.checkpoint_file import CheckpointFile
from projections.runner import Runner
from projections.sweep import Sweeper
from projections.verification import verify_log
from tests.factories import audit_runner, fill_ledger, tamper_with_events

DELETED = "is not in the store: published checkpoints were deleted"


@pytest.fixture
def views(ledger: Ledger) -> Iterator[Runner]:
    runner = audit_runner(ledger, page_size=4)
    fill_ledger(ledger, sessions=3)
    runner.catch_up()
    yield runner
    runner.store.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """The store's signing key (tests/conftest.py), which also seals its events."""
    return tmp_path / "signing-key.pem"


def auditor(views: Runner, key_file: Path) -> Auditor:
    return Auditor(views.store, SigningKey.load(key_file))


def delete_published(views: Runner) -> None:
    with views.store.transaction() as cur:
        cur.execute("DELETE FROM audit_published")


def test_a_signed_checkpoint_is_kept_beside_the_key_privately(views: Runner,
                                                              key_file: Path) -> None:
    signed = auditor(views, key_file).checkpoint()
    kept = key_file.with_name("signing-key.pem.checkpoint")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    held = json.loads(kept.read_text())
    assert held["format"] == "vledger-kept-checkpoints/1"
    assert list(held["stores"].values()) == [signed]
    assert sorted(p.name for p in key_file.parent.iterdir()
                  if p.name.startswith(("signing-key", ".signing-key", ".checkpoint"))
                  and not p.name.endswith(".stores")) == [
        "signing-key.pem", "signing-key.pem.checkpoint"]  # no temporary file left


def test_a_deleted_published_checkpoint_is_refused_not_replaced(
        views: Runner, ledger: Ledger, key_file: Path) -> None:
    """The operator changes an event, rebuilds the log and deletes the published row: the
    server signed the changed history as if nothing had been published."""
    signed = auditor(views, key_file).checkpoint()
    [session] = [n for n in ledger.recorder.select_notifications(1, 100)
                 if b'"minutes":30' in bytes(n.state)][:1]
    tamper_with_events(views.store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
                       (bytes(session.state).replace(b'"minutes":30', b'"minutes":90'),
                        session.id))
    views.rebuild()
    delete_published(views)

    again = auditor(views, key_file)  # a restarted server
    with pytest.raises(AuditLogAltered, match=DELETED) as refused:
        again.checkpoint()
    assert f"the checkpoint of {signed['tree_size']} events signed at " in str(refused.value)
    assert again.published() is None  # nothing new was published
    started = unextended_checkpoint(views.store, key_file)
    assert started is not None and DELETED in started


def test_deleting_the_published_checkpoint_alone_is_refused(views: Runner,
                                                            key_file: Path) -> None:
    auditor(views, key_file).checkpoint()
    delete_published(views)
    with pytest.raises(AuditLogAltered, match=DELETED):
        auditor(views, key_file).check_published()


def test_a_store_put_back_to_an_older_checkpoint_is_refused(
        views: Runner, ledger: Ledger, key_file: Path) -> None:
    signer = auditor(views, key_file)
    first = signer.checkpoint()
    fill_ledger(ledger, sessions=2)
    views.catch_up()
    later = signer.checkpoint()
    with views.store.transaction() as cur:  # the older row, as a backup of it held
        cur.execute("UPDATE audit_published SET tree_size = ?, root_hash = ?, signed_at = ?, "
                    "signature = ?", (first["tree_size"], first["root_hash"],
                                      first["signed_at"], first["signature"]))
    with pytest.raises(AuditLogAltered, match=DELETED) as refused:
        auditor(views, key_file).checkpoint()
    assert f"the checkpoint of {later['tree_size']} events" in str(refused.value)


def test_verify_and_the_sweep_report_a_deleted_published_checkpoint(
        views: Runner, ledger: Ledger, key_file: Path) -> None:
    signer = auditor(views, key_file)
    signer.checkpoint()
    delete_published(views)
    report = verify_log(ledger.recorder, signer, signer.key.public_key_pem())
    failed = {c.name: c.detail for c in report.checks if not c.ok}
    assert list(failed) == ["kept checkpoint"] and DELETED in failed["kept checkpoint"]
    swept = Sweeper(ledger.recorder, signer, 3600.0).sweep()
    assert not swept.ok and DELETED in swept.detail


def test_an_untouched_store_passes_with_the_kept_checkpoint(
        views: Runner, ledger: Ledger, key_file: Path) -> None:
    signer = auditor(views, key_file)
    signer.checkpoint()
    fill_ledger(ledger, sessions=1)
    views.catch_up()
    report = verify_log(ledger.recorder, signer, signer.key.public_key_pem())
    assert report.ok, report.checks
    assert "kept checkpoint" in {c.name for c in report.checks}
    assert unextended_checkpoint(views.store, key_file) is None


def test_a_checkpoint_published_before_the_file_existed_is_accepted_into_it(
        views: Runner, key_file: Path) -> None:
    """A store published to before this version (or by another host of the key)."""
    published = auditor(views, key_file).checkpoint()
    kept = CheckpointFile(key_file, views.store.location)
    kept.path.unlink()
    assert auditor(views, key_file).check_published() == published
    assert kept.read() == published


def test_a_kept_checkpoint_of_another_key_is_reported_not_a_crash(
        views: Runner, key_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "signing-key.pem"
    theirs = auditor(views, other).checkpoint()
    delete_published(views)
    SigningKey.load(key_file)  # this host's key, whose file now keeps another's checkpoint
    CheckpointFile(key_file, views.store.location).keep(theirs)
    with pytest.raises(AuditLogAltered, match=f"signed with key {theirs['key_id']}"):
        auditor(views, key_file).check_published()
    started = unextended_checkpoint(views.store, key_file)
    assert started is not None and "VLEDGER_SIGNING_KEY_FILE" in started


def test_a_reader_without_the_key_keeps_no_file_and_verifies_as_before(
        views: Runner, ledger: Ledger, key_file: Path) -> None:
    key = SigningKey.load(key_file)
    Auditor(views.store, key).checkpoint()
    report = verify_log(ledger.recorder, Auditor(views.store, None), key.public_key_pem())
    assert report.ok and "kept checkpoint" not in {c.name for c in report.checks}


def test_concurrent_writers_never_move_the_kept_checkpoint_back(tmp_path: Path) -> None:
    """The processes of one deployment keep checkpoints at once: the file stays whole, and the
    largest tree wins whatever order they come in."""
    key_file = tmp_path / "signing-key.pem"
    SigningKey.load(key_file)
    location = StoreLocation(kind="sqlite", sqlite_path=tmp_path / "ledger.db")
    sizes = list(range(1, 201))

    def keep(mine: list[int]) -> None:
        kept = CheckpointFile(key_file, location)
        for size in mine:
            kept.keep({"tree_size": size, "root_hash": f"{size:064x}", "signed_at": "t",
                       "signature": "s", "key_id": "k"})

    threads = [threading.Thread(target=keep, args=(sizes[i::4][::-1 if i % 2 else 1],))
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = CheckpointFile(key_file, location).read()
    assert held is not None and held["tree_size"] == 200
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".checkpoint-")] == []


def test_vledger_verify_on_the_key_s_host_reports_a_deleted_published_checkpoint(
        views: Runner, ledger: Ledger, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from projections.audit_cli import app

    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(key_file))
    auditor(views, key_file).checkpoint()
    delete_published(views)
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "the store no longer holds the checkpoint this host signed last" in said, said


def test_a_probe_s_answer_is_remembered_at_one_position_for_a_few_seconds(
        views: Runner, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb39 F8: /readyz asks `refusal` every few seconds; it reads a few rows at most once
    per audit position and RECHECK_SECONDS."""
    import projections.audit

    signer = auditor(views, key_file)
    signed = signer.checkpoint()
    assert signer.refusal(7) is None
    delete_published(views)
    assert signer.refusal(7) is None  # remembered
    why = signer.refusal(8)  # the log moved on: checked again
    assert why is not None and DELETED in why
    with views.store.transaction() as cur:  # put back, as from a backup
        cur.execute(projections.audit.PUBLISH_SQL, tuple(signed[f] for f in (
            "tree_size", "root_hash", "signed_at", "signature", "key_id")))
    assert signer.refusal(8) == why  # remembered
    monkeypatch.setattr(projections.audit, "RECHECK_SECONDS", 0.0)
    assert signer.refusal(8) is None  # checked again once the time is up


def test_a_store_with_published_checkpoints_but_none_kept_here_is_warned_of(
        views: Runner, key_file: Path) -> None:
    """bb39 F9: the file moved away (and the store rolled back), the store's checkpoint was
    taken as kept without a word."""
    assert unkept_checkpoint(views.store, key_file) is None  # nothing published yet
    published = auditor(views, key_file).checkpoint()
    assert unkept_checkpoint(views.store, key_file) is None  # kept here
    kept = CheckpointFile(key_file, views.store.location)
    kept.path.unlink()
    said = unkept_checkpoint(views.store, key_file)
    assert said is not None and f"no checkpoint is kept for it in {kept.path}" in said
    assert f"the last of {published['tree_size']} events" in said
    assert "cannot be detected on this host" in said
    assert unextended_checkpoint(views.store, key_file) is None  # it starts, and keeps it
    assert unkept_checkpoint(views.store, key_file) is None
