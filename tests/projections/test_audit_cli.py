"""`vledger verify`: the whole log recomputed from the event store, tampering found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ledger import Ledger
from ledger.errors import AuditLogAltered
from projections.audit import Auditor, SigningKey, verify_checkpoint
from projections.audit_cli import app
from projections.runner import Runner
from projections.store import table_names
from projections.verification import verify_log
from tests.factories import ADMIN, audit_runner, fill_ledger, make_unit, tamper_with_events


@pytest.fixture
def views(ledger: Ledger, database_url: str, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    monkeypatch.setenv("VLEDGER_DATABASE_URL", database_url)
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "signing-key.pem"))
    runner = audit_runner(ledger, page_size=4)
    fill_ledger(ledger, sessions=3)
    runner.catch_up()
    yield runner
    runner.store.close()


def verify(*args: str) -> Result:
    return CliRunner().invoke(app, ["verify", *args])


def test_an_untouched_log_verifies(views: Runner, tmp_path: Path) -> None:
    key = SigningKey.load(tmp_path / "signing-key.pem")  # the operator's, where it runs
    saved = tmp_path / "checkpoint.json"
    result = verify("--save", str(saved))
    assert result.exit_code == 0, result.output
    assert "the log verifies" in result.output and "events/s" in result.output
    # bb33 F6: it says what it does not cover, and what does.
    assert "vledger projections check" in " ".join(result.output.split())
    checkpoint = json.loads(saved.read_text())
    assert verify_checkpoint(key.public_key_pem(), checkpoint)
    assert checkpoint["tree_size"] == views.head()
    assert Auditor(views.store, None).published() == checkpoint  # signed is published


def _published_rows(views: Runner) -> list[Any]:
    with views.store.reading() as cur:
        if "audit_published" not in table_names(cur):
            return []
        return list(cur.execute("SELECT * FROM audit_published").fetchall())


def test_before_any_checkpoint_verify_reads_only_and_says_nothing_vouches_for_it(
        views: Runner, tmp_path: Path) -> None:
    """Right after the views caught up (e.g. `vledger demo`): no key, nothing published.
    verify recomputes the log, makes no key and signs nothing of its own (bb10 F5). (The
    ledger's first write made the key, to seal its events: ledger/eventseals.py.)"""
    key_file = tmp_path / "signing-key.pem"
    made = key_file.exists() and key_file.read_bytes()
    result = verify()
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "the log verifies" in said and "vouched for by no one" in said
    assert (key_file.exists() and key_file.read_bytes()) == made
    assert _published_rows(views) == []
    if made:  # an auditor's machine, without the key
        key_file.unlink()
    refused = verify("--save", str(tmp_path / "cp.json"))
    assert refused.exit_code == 2 and "no checkpoint has been published" in refused.output
    assert not (tmp_path / "cp.json").exists()


def test_an_auditor_verifies_with_the_public_key_alone(
        views: Runner, ledger: Ledger, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An auditor holds the published public key, never the private one (bb10 F1): verify,
    --save (the published checkpoint) and later --against work with it, and write nothing."""
    key = SigningKey.load(tmp_path / "signing-key.pem")
    published = Auditor(views.store, key).checkpoint()  # as the server publishes it
    public = tmp_path / "auditor" / "public.pem"
    public.parent.mkdir()
    public.write_text(key.public_key_pem())
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "auditor" / "none.pem"))
    saved = tmp_path / "auditor" / "cp.json"
    result = verify("--public-key", str(public), "--save", str(saved))
    assert result.exit_code == 0, result.output
    assert json.loads(saved.read_text()) == published
    assert sorted(p.name for p in public.parent.iterdir()) == ["cp.json", "public.pem"]
    fill_ledger(ledger, sessions=2)
    views.catch_up()
    result = verify("--public-key", str(public), "--against", str(saved))
    assert result.exit_code == 0, result.output
    assert "consistency proof" in result.output and "verifies up to" not in result.output
    assert len(_published_rows(views)) == 1  # the auditor published nothing of its own
    assert Auditor(views.store, None).published() == published
    stranger = SigningKey.load(tmp_path / "auditor" / "stranger.pem")
    public.write_text(stranger.public_key_pem())  # not the office's key
    result = verify("--public-key", str(public))
    assert result.exit_code == 1, result.output
    assert "published checkpoint" in result.output and "MISMATCH" in result.output


def test_verify_says_how_far_the_tree_reaches_when_events_are_newer(views: Runner,
                                                                    ledger: Ledger) -> None:
    fill_ledger(ledger, sessions=1)  # written after the audit log last caught up
    result = verify()
    assert result.exit_code == 0, result.output
    assert "verifies up to tree size" in result.output
    assert "not in the audit log yet" in result.output


def test_a_changed_event_fails_verification(views: Runner, ledger: Ledger) -> None:
    tamper_with_events(views.store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
           (b'{"minutes":6000}', 5))
    result = verify()
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "position 5" in result.output


def test_a_deleted_event_fails_verification(views: Runner, ledger: Ledger) -> None:
    tamper_with_events(views.store, ledger, "DELETE FROM {table} WHERE {id} = ?", (ledger.head(),))
    assert verify().exit_code == 1


def test_a_changed_stored_leaf_fails_verification(views: Runner) -> None:
    with views.store.transaction() as cur:
        cur.execute("UPDATE audit_leaves SET leaf_hash = ? WHERE leaf_index = 2", (bytes(32),))
    assert verify().exit_code == 1


@pytest.mark.parametrize("where", ["leaf_index = (SELECT MAX(leaf_index) FROM audit_leaves)",
                                   "leaf_index = 2"])
def test_a_deleted_leaf_is_an_altered_log_not_lag(views: Runner, ledger: Ledger,
                                                  where: str) -> None:
    """bb26 F1: with the last leaf deleted, verify passed ("not in the audit log yet"), and
    the next event was logged in its place, never to be logged itself."""
    with views.store.transaction() as cur:
        # PostgreSQL cannot read the table it deletes from in a subquery of the same name.
        index = cur.execute(f"SELECT leaf_index FROM audit_leaves WHERE {where}").fetchone()
        cur.execute("DELETE FROM audit_leaves WHERE leaf_index = ?", (index[0],))
    result = verify()
    assert result.exit_code == 1, result.output
    assert "leaves kept" in result.output and "deleted" in result.output
    fill_ledger(ledger, sessions=1)
    with pytest.raises(AuditLogAltered, match="deleted"):
        views.catch_up()
    if "MAX" in where:  # no leaf of the next event was written in the deleted one's place
        with views.store.reading() as cur:
            last = cur.execute("SELECT MAX(position) FROM audit_leaves").fetchone()[0]
        assert last < ledger.head() - 1


def test_a_changed_subtree_hash_off_the_roots_path_is_found(views: Runner, ledger: Ledger,
                                                             tmp_path: Path) -> None:
    # With 32 leaves or more, node (4, 0) feeds proofs but not the current root (its parent
    # (5, 0) is stored), so only the node check can see it.
    while ledger.head() < 32:
        fill_ledger(ledger, sessions=10)
    views.catch_up()
    assert views.head() >= 32
    with views.store.transaction() as cur:
        cur.execute("UPDATE audit_nodes SET hash = ? WHERE level = 4 AND idx = 0", (bytes(32),))
    key = SigningKey.load(tmp_path / "signing-key.pem")
    report = verify_log(ledger.recorder, Auditor(views.store, key), key.public_key_pem())
    assert [c.name for c in report.checks if not c.ok] == ["subtree hashes"]


def test_a_later_log_is_consistent_with_a_saved_checkpoint(views: Runner, ledger: Ledger,
                                                           tmp_path: Path) -> None:
    SigningKey.load(tmp_path / "signing-key.pem")
    saved = tmp_path / "checkpoint.json"
    assert verify("--save", str(saved)).exit_code == 0
    fill_ledger(ledger, sessions=2)
    views.catch_up()
    result = verify("--against", str(saved))
    assert result.exit_code == 0, result.output
    assert "consistency proof" in result.output


def test_a_rewritten_past_is_caught_by_the_saved_checkpoint(views: Runner, ledger: Ledger,
                                                            tmp_path: Path) -> None:
    SigningKey.load(tmp_path / "signing-key.pem")
    saved = tmp_path / "checkpoint.json"
    assert verify("--save", str(saved)).exit_code == 0
    forged = json.loads(saved.read_text())
    forged["root_hash"] = "00" * 32
    saved.write_text(json.dumps(forged))
    result = verify("--against", str(saved))
    assert result.exit_code == 1
    assert "saved checkpoint" in result.output


def test_an_unreadable_checkpoint_file_is_refused(views: Runner, tmp_path: Path) -> None:
    saved = tmp_path / "checkpoint.json"
    saved.write_text('{"tree_size": 3}')
    assert verify("--against", str(saved)).exit_code == 2


def _raise_minutes(views: Runner, ledger: Ledger) -> int:
    """A session's minutes raised in its stored event (the rest left as it was): its position."""
    [recorded] = [n for n in ledger.recorder.select_notifications(1, 100)
                  if b'"minutes":' in bytes(n.state)][:1]
    state = bytes(recorded.state)
    start = state.index(b'"minutes":') + len(b'"minutes":')
    end = start + len(state[start:]) - len(state[start:].lstrip(b"0123456789"))
    tamper_with_events(views.store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
                       (state[:start] + b"6000" + state[end:], recorded.id))
    return int(recorded.id)


def test_a_changed_event_folded_again_by_a_rebuild_is_still_caught(
        views: Runner, ledger: Ledger, tmp_path: Path) -> None:
    """An operator rebuilds the audit log after events were changed in the database: the
    rebuilt tree matches the changed events, but no longer extends the checkpoint the store
    published. No second history is signed under the same key, and verify says so."""
    auditor = Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem"))
    published = auditor.checkpoint()  # as GET /v1/audit/checkpoint publishes it
    _raise_minutes(views, ledger)
    views.rebuild()  # the runner's own rebuild: the command refuses (below)

    with pytest.raises(AuditLogAltered, match="no longer have the root"):
        auditor.checkpoint()
    result = verify()
    assert result.exit_code == 1, result.output
    assert "published checkpoint" in result.output and "MISMATCH" in result.output
    again = Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem"))
    assert again.published() == published  # the published statement stands


def test_a_removed_event_folded_again_by_a_rebuild_is_still_caught(
        views: Runner, ledger: Ledger, tmp_path: Path) -> None:
    auditor = Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem"))
    auditor.checkpoint()
    tamper_with_events(views.store, ledger, "DELETE FROM {table} WHERE {id} = ?", (5,))
    views.rebuild()
    with pytest.raises(AuditLogAltered, match="events were removed"):
        auditor.checkpoint()


def test_a_checkpoint_is_refused_with_another_key_than_the_store_s(
        views: Runner, tmp_path: Path) -> None:
    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    stranger = Auditor(views.store, SigningKey.load(tmp_path / "another-key.pem"))
    with pytest.raises(AuditLogAltered, match="VLEDGER_SIGNING_KEY_FILE"):
        stranger.checkpoint()


def test_a_log_that_grew_extends_its_published_checkpoint(views: Runner, ledger: Ledger,
                                                          tmp_path: Path) -> None:
    auditor = Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem"))
    first = auditor.checkpoint()
    fill_ledger(ledger, sessions=2)
    views.catch_up()
    views.rebuild()  # a rebuild of untouched events is no alarm
    later = auditor.checkpoint()
    assert later["tree_size"] > first["tree_size"]
    assert auditor.published() == later
    assert verify().exit_code == 0


@pytest.mark.parametrize("kind", ["missing", "private", "not-pem"])
def test_a_public_key_file_that_is_not_one_is_exit_2_not_a_mismatch(
        views: Runner, tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.pem"
    if kind == "private":
        SigningKey.load(tmp_path / "signing-key.pem")  # the store's key, made on first use
        path.write_bytes((tmp_path / "signing-key.pem").read_bytes())
    elif kind == "not-pem":
        path.write_text("not a key\n")
    result = CliRunner().invoke(app, ["verify", "--public-key", str(path)])
    assert result.exit_code == 2, result.output
    assert "MISMATCH" not in result.output


def test_a_checkpoint_that_cannot_be_saved_is_exit_2_before_the_work(
        views: Runner, tmp_path: Path) -> None:
    result = verify("--save", str(tmp_path / "no-such-dir" / "cp.json"))
    assert result.exit_code == 2 and "no directory" in result.output


def test_a_state_turned_into_text_by_a_hand_edit_is_a_mismatch_not_a_crash(
        views: Runner, ledger: Ledger) -> None:
    """`UPDATE … SET state = replace(state, …)` in SQLite's shell stores TEXT, not a BLOB."""
    if views.store.postgres:
        changed = "UPDATE {table} SET state = convert_to(replace(convert_from(state, 'UTF8'), " \
                  "'\"', '\"'), 'UTF8') || 'x'::bytea WHERE {id} = ?"
    else:
        changed = "UPDATE {table} SET state = CAST(state AS TEXT) || 'x' WHERE {id} = ?"
    tamper_with_events(views.store, ledger, changed, (5,))
    result = verify()
    assert result.exit_code == 1, result.output
    assert "MISMATCH" in result.output and "position 5" in result.output


def test_check_fails_on_events_that_no_longer_extend_the_published_checkpoint(
        views: Runner, ledger: Ledger, tmp_path: Path) -> None:
    """The views agree with a rebuild from changed events; the published checkpoint does not."""
    from projections.cli import app as projections_app

    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    tamper_with_events(views.store, ledger, "DELETE FROM {table} WHERE {id} = ?", (5,))
    views.rebuild()
    result = CliRunner().invoke(projections_app, ["check"])
    assert result.exit_code == 1, result.output
    assert "does not extend the published checkpoint" in result.output


def test_verify_without_the_store_s_key_makes_no_new_one(
        views: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from another working directory (or with VLEDGER_SIGNING_KEY_FILE unset), verify
    found no key and made a new one beside it; it now says which key the store needs."""
    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    elsewhere = tmp_path / "elsewhere" / "signing-key.pem"
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(elsewhere))
    result = verify()
    assert result.exit_code == 2, result.output
    assert "set VLEDGER_SIGNING_KEY_FILE" in result.output and not elsewhere.exists()


def test_verify_needs_no_kek_file_and_makes_none(
        views: Runner, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An auditor verifies the events' bytes and opens no number: the KEK file, which only the
    operator holds, is neither needed nor made."""
    ledger.register_volunteer(ADMIN, "雷锋", make_unit(ledger), date(2017, 3, 5),
                              phone="13812345678")
    views.catch_up()
    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    elsewhere = tmp_path / "elsewhere" / "ledger.kek"
    monkeypatch.setenv("VLEDGER_KEK_FILE", str(elsewhere))
    result = verify()
    assert result.exit_code == 0, result.output
    assert not elsewhere.exists()


@pytest.mark.parametrize("view", [None, "audit", "hours"])
def test_a_rebuild_over_changed_events_is_refused_and_keeps_the_evidence(
        views: Runner, ledger: Ledger, tmp_path: Path, view: str | None) -> None:
    """`vledger projections rebuild` would fold a changed event into the views, and a rebuilt
    audit log would no longer show which event it was: refused, naming its position."""
    from projections.cli import app as projections
    from projections.models import ReadModels, auditor_views

    models = ReadModels(ledger, extra=auditor_views())
    models.catch_up()  # every view, the hours too
    models.close()
    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    position = _raise_minutes(views, ledger)
    with views.store.reading() as cur:
        leaves = cur.execute("SELECT * FROM audit_leaves ORDER BY leaf_index").fetchall()
        hours = cur.execute("SELECT * FROM hours_cells ORDER BY 1, 2, 3, 4").fetchall()

    result = CliRunner().invoke(projections, ["rebuild", *([view] if view else [])])
    assert result.exit_code == 1, result.output
    assert f"position(s) {position}" in result.output and "Nothing was rebuilt" in result.output
    with views.store.reading() as cur:
        assert cur.execute("SELECT * FROM audit_leaves ORDER BY leaf_index").fetchall() == leaves
        assert cur.execute("SELECT * FROM hours_cells ORDER BY 1, 2, 3, 4").fetchall() == hours
    found = verify()
    assert found.exit_code == 1 and f"position {position}" in found.output  # still located


def test_a_changed_audit_log_is_repaired_by_a_rebuild_from_the_events(
        views: Runner, tmp_path: Path) -> None:
    """The leaves, not the events, were changed: the log no longer extends its published
    checkpoint, so rebuilding it from the events is the repair (and is checked against it)."""
    from projections.cli import app as projections

    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    with views.store.transaction() as cur:
        cur.execute("UPDATE audit_leaves SET leaf_hash = ? WHERE leaf_index = 2", (bytes(32),))
    assert verify().exit_code == 1

    result = CliRunner().invoke(projections, ["rebuild", "audit"])
    assert result.exit_code == 0, result.output
    assert "extends the published checkpoint" in result.output
    assert verify().exit_code == 0


def test_check_names_a_changed_event_by_position_and_never_says_all_match(
        views: Runner, ledger: Ledger, tmp_path: Path) -> None:
    from projections.cli import app as projections

    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    position = _raise_minutes(views, ledger)
    result = CliRunner().invoke(projections, ["check"])
    assert result.exit_code == 1, result.output
    assert f"the event at position {position} no longer gives the leaf" in result.output
    assert "b'" not in result.output  # hashes in hex, not Python bytes
    assert "every view matches" not in result.output


@pytest.mark.parametrize("view", [None, "audit", "hours"])
def test_a_rebuild_after_the_last_event_was_deleted_is_refused(
        views: Runner, ledger: Ledger, tmp_path: Path, view: str | None) -> None:
    """bb33 F4: the last logged event deleted from the store was not counted as altered, so a
    rebuild went ahead, logged the events without it and only then found the published
    checkpoint no longer extended (exit 1, the evidence already gone)."""
    from projections.cli import app as projections

    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    last = ledger.head()
    tamper_with_events(views.store, ledger, "DELETE FROM {table} WHERE {id} = ?", (last,))
    with views.store.reading() as cur:
        leaves = cur.execute("SELECT * FROM audit_leaves ORDER BY leaf_index").fetchall()

    result = CliRunner().invoke(projections, ["rebuild", *([view] if view else [])])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "Nothing was rebuilt" in said and str(last) in said
    with views.store.reading() as cur:
        assert cur.execute("SELECT * FROM audit_leaves ORDER BY leaf_index").fetchall() == leaves


@pytest.mark.parametrize("view", [None, "audit", "hours"])
def test_a_rebuild_over_an_event_changed_with_its_leaf_is_refused(
        views: Runner, ledger: Ledger, tmp_path: Path, view: str | None) -> None:
    """bb33 F4: an event changed, its leaf made to match and the subtree hashes deleted: the
    events agree with the leaves, but no longer give the published root. A rebuild would
    have logged the changed event and folded it into the views."""
    from projections.audit import notification_leaf_hash
    from projections.cli import app as projections
    from projections.models import ReadModels, auditor_views

    models = ReadModels(ledger, extra=auditor_views())
    models.catch_up()  # every view, the hours too
    models.close()
    Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem")).checkpoint()
    position = _raise_minutes(views, ledger)
    [changed] = ledger.recorder.select_notifications(position, 1)
    with views.store.transaction() as cur:
        cur.execute("UPDATE audit_leaves SET leaf_hash = ? WHERE position = ?",
                    (notification_leaf_hash(changed), position))
        cur.execute("DELETE FROM audit_nodes")
    with views.store.reading() as cur:
        hours = cur.execute("SELECT * FROM hours_cells ORDER BY 1, 2, 3, 4").fetchall()

    result = CliRunner().invoke(projections, ["rebuild", *([view] if view else [])])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "no longer give the root" in said and "Nothing was rebuilt" in said
    with views.store.reading() as cur:
        assert cur.execute("SELECT * FROM hours_cells ORDER BY 1, 2, 3, 4").fetchall() == hours


def test_verify_names_an_event_deleted_from_the_middle_and_only_it(
        views: Runner, ledger: Ledger) -> None:
    """bb36 F2: one event deleted from the middle was not named; every later one was."""
    middle = ledger.head() // 2
    tamper_with_events(views.store, ledger, "DELETE FROM {table} WHERE {id} = ?", (middle,))
    result = verify()
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert f"1 of {ledger.head()} leaf hashes differ, first: position {middle}" in said
    assert "(deleted from the store)" in said and "Compare with a backup" in said, said


def test_verify_blames_the_log_s_own_tables_when_every_event_is_intact(
        views: Runner, ledger: Ledger) -> None:
    """bb38 F9: a changed subtree hash was reported as events changed or deleted."""
    for _ in range(2):
        fill_ledger(ledger, sessions=7)
    views.catch_up()
    with views.store.transaction() as cur:
        cur.execute("UPDATE audit_nodes SET hash = ? WHERE level = (SELECT MIN(level) FROM "
                    "audit_nodes)", (bytes(32),))
    result = verify()
    said = " ".join(result.output.split())
    assert result.exit_code == 1, said
    assert "the audit log's own tables were changed" in said, said
    assert "rebuild audit" in said and "no longer match the audit log" not in said, said
