"""The tamper-evident log over every event: leaves, roots, proofs, checkpoints, tampering."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger
from ledger.errors import InvalidField
from projections.audit import (
    STORED_LEVEL,
    AuditLog,
    Auditor,
    SigningKey,
    event_leaf_hash,
    leaves_altered,
    recompute_root,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from projections.feed import FeedEvent
from projections.history import event_feed
from projections.runner import Runner
from tests.factories import audit_runner, fill_ledger, tamper_with_events
from tests.projections.test_merkle import mth, path, subproof


@pytest.fixture
def views(ledger: Ledger) -> Iterator[Runner]:
    runner = audit_runner(ledger, page_size=3)  # small pages: the tree grows across many folds
    yield runner
    runner.store.close()


@pytest.fixture
def auditor(views: Runner, tmp_path: Path) -> Auditor:
    return Auditor(views.store, SigningKey.load(tmp_path / "signing-key.pem"))


def leaf_inputs(ledger: Ledger) -> list[tuple[int, bytes]]:
    """(position, leaf input) of every event, encoded from the feed as the docstring says."""
    out = []
    for e in event_feed(ledger.recorder, 0, 10_000, unmasked=True):
        oid, topic = e["originator_id"].encode(), e["topic"].encode()
        state = base64.b64decode(e["state"])
        leaf = (b"\x01" + struct.pack(">Q", e["position"]) + struct.pack(">I", len(oid)) + oid
                + struct.pack(">Q", e["version"]) + struct.pack(">I", len(topic)) + topic
                + struct.pack(">I", len(state)) + state)
        out.append((e["position"], leaf))
    return out


def test_every_event_is_a_leaf_encoded_as_documented(ledger: Ledger, views: Runner,
                                                     auditor: Auditor) -> None:
    fill_ledger(ledger)
    views.catch_up()
    leaves = leaf_inputs(ledger)
    assert auditor.size() == len(leaves) == ledger.head()
    for index, (position, leaf) in enumerate(leaves):
        proof = auditor.inclusion(position, len(leaves))
        assert proof["leaf_index"] == index
        assert proof["leaf_hash"] == hashlib.sha256(b"\x00" + leaf).hexdigest()


def test_roots_and_proofs_match_the_reference_for_every_size(ledger: Ledger, views: Runner,
                                                            auditor: Auditor) -> None:
    fill_ledger(ledger)
    views.catch_up()
    leaves = leaf_inputs(ledger)
    data = [leaf for _, leaf in leaves]
    for n in range(1, len(data) + 1):
        root = mth(data[:n])
        assert auditor.root(n) == root
        for m, (position, _) in enumerate(leaves[:n]):
            proof = auditor.inclusion(position, n)
            hashes = [bytes.fromhex(h) for h in proof["hashes"]]
            assert hashes == path(m, data[:n])
            assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), m, n, hashes, root)
        for m in range(1, n + 1):
            hashes = [bytes.fromhex(h) for h in auditor.consistency(m, n)["hashes"]]
            assert hashes == subproof(m, data[:n], True)
            assert verify_consistency(m, n, mth(data[:m]), root, hashes)


def test_blocks_past_the_stored_level_give_the_reference_proofs(ledger: Ledger, views: Runner,
                                                                auditor: Auditor) -> None:
    # Blocks of fewer than 2**STORED_LEVEL leaves are rehashed from leaves, bigger ones stored:
    # sizes around 16, 32 and 64 mix both kinds in one proof.
    while ledger.head() <= 65:
        fill_ledger(ledger, sessions=10)
    views.catch_up()
    leaves = leaf_inputs(ledger)
    data = [leaf for _, leaf in leaves]
    assert len(data) > 65
    for n in (15, 16, 17, 31, 32, 33, 48, 63, 64, 65, len(data)):
        root = mth(data[:n])
        assert auditor.root(n) == root
        for m in (0, 1, 15, 16, 17, 31, 32, 47, n - 1):
            if m < n:
                proof = auditor.inclusion(leaves[m][0], n)
                assert [bytes.fromhex(h) for h in proof["hashes"]] == path(m, data[:n])
        for m in (1, 8, 16, 17, 32, 40, n):
            if m <= n:
                hashes = [bytes.fromhex(h) for h in auditor.consistency(m, n)["hashes"]]
                assert hashes == subproof(m, data[:n], True)
    with views.store.reading() as cur:
        levels = {int(lv) for (lv,) in cur.execute("SELECT level FROM audit_nodes").fetchall()}
    assert min(levels) == STORED_LEVEL and max(levels) == len(data).bit_length() - 1


def test_a_checkpoint_is_signed_over_the_current_root(ledger: Ledger, views: Runner,
                                                      auditor: Auditor) -> None:
    fill_ledger(ledger, sessions=2)
    views.catch_up()
    checkpoint = auditor.checkpoint()
    assert checkpoint["tree_size"] == ledger.head()
    assert checkpoint["root_hash"] == mth([leaf for _, leaf in leaf_inputs(ledger)]).hex()
    assert checkpoint["key_id"] == auditor.key.key_id
    assert verify_checkpoint(auditor.key.public_key_pem(), checkpoint)
    earlier = auditor.checkpoint(3)
    assert earlier["root_hash"] == mth([leaf for _, leaf in leaf_inputs(ledger)][:3]).hex()


def test_the_tree_only_grows(ledger: Ledger, views: Runner, auditor: Auditor) -> None:
    fill_ledger(ledger, sessions=1)
    views.catch_up()
    before = auditor.checkpoint()
    fill_ledger(ledger, sessions=3)
    views.catch_up()
    after = auditor.checkpoint()
    proof = auditor.consistency(before["tree_size"], after["tree_size"])
    assert verify_consistency(before["tree_size"], after["tree_size"],
                              bytes.fromhex(before["root_hash"]), bytes.fromhex(after["root_hash"]),
                              [bytes.fromhex(h) for h in proof["hashes"]])


def test_positions_with_gaps_get_consecutive_leaf_indexes(views: Runner,
                                                          auditor: Auditor) -> None:
    events = [FeedEvent(position=p, originator_id=f"agg-{p}", version=1, type="X.Happened",
                        recorded_at="2017-03-05T00:00:00+00:00", data={}, topic="x:X.Happened",
                        state=b"{}") for p in (3, 10, 11, 40, 41)]
    with views.store.transaction() as cur:
        AuditLog().apply(cur, events[:2])
        # As the runner does after each page: the log's next page starts after position 10.
        cur.execute("UPDATE projection_positions SET position = ? WHERE name = ?", (10, "audit"))
        AuditLog().apply(cur, events[2:])
    assert [auditor.inclusion(p, 5)["leaf_index"] for p in (3, 10, 11, 40, 41)] == [0, 1, 2, 3, 4]
    assert auditor.root(5) == recompute_root(
        bytes.fromhex(auditor.inclusion(p, 5)["leaf_hash"]) for p in (3, 10, 11, 40, 41))
    # A skipped position is no event, and is not said to lie beyond the log.
    with pytest.raises(InvalidField, match="no event holds position 12: positions increase"):
        auditor.inclusion(12, 5)
    with pytest.raises(InvalidField, match="beyond the log"):
        auditor.inclusion(42, 5)


def test_sizes_beyond_the_tree_are_refused_naming_the_field(ledger: Ledger, views: Runner,
                                                            auditor: Auditor) -> None:
    fill_ledger(ledger, sessions=1)
    views.catch_up()
    size = auditor.size()
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: auditor.checkpoint(size + 1), "tree_size"),
        (lambda: auditor.inclusion(1, size + 1), "tree_size"),
        (lambda: auditor.inclusion(1, 0), "tree_size"),
        (lambda: auditor.inclusion(size, size - 1), "position"),
        (lambda: auditor.consistency(3, size + 1), "second"),
        (lambda: auditor.consistency(4, 3), "first"),
        (lambda: auditor.consistency(0, 3), "first"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidField) as refused:
            call()
        assert refused.value.field == field


def test_a_position_beyond_the_log_is_invalid(ledger: Ledger, views: Runner,
                                             auditor: Auditor) -> None:
    fill_ledger(ledger, sessions=1)
    views.catch_up()
    with pytest.raises(InvalidField) as refused:
        auditor.inclusion(ledger.head() + 1, auditor.size())
    assert refused.value.field == "position"


def test_a_changed_event_no_longer_matches_its_leaf(ledger: Ledger, views: Runner,
                                                    auditor: Auditor) -> None:
    fill_ledger(ledger, sessions=2)
    views.catch_up()
    position = ledger.head() - 1
    tamper_with_events(views.store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
                       (b'{"minutes":600}', position))
    changed = next(leaf for p, leaf in leaf_inputs(ledger) if p == position)
    stored = auditor.inclusion(position, auditor.size())["leaf_hash"]
    assert stored != hashlib.sha256(b"\x00" + changed).hexdigest()


def test_a_page_is_hashed_as_each_event_alone() -> None:
    events = [FeedEvent(p, oid, v, "X.Y", topic=topic, state=state)
              for p, oid, v, topic, state in (
        (1, "vol-1", 1, "ledger.volunteers:Volunteer.Registered", b'{"a":1}'),
        (2, "单位-二", 7, "ledger.units:Unit.Registered", "{\"名\":\"列东\"}".encode()),
        (2**40, "x" * 300, 2**33, "ledger.volunteers:Volunteer.Registered", b""),
    )]
    documented = []
    for e in events:  # the layout of the module docstring, field by field
        oid, topic = e.originator_id.encode(), e.topic.encode()
        leaf = (b"\x01" + struct.pack(">Q", e.position) + struct.pack(">I", len(oid)) + oid
                + struct.pack(">Q", e.version) + struct.pack(">I", len(topic)) + topic
                + struct.pack(">I", len(e.state)) + e.state)
        documented.append(hashlib.sha256(b"\x00" + leaf).digest())
    assert [event_leaf_hash(e) for e in events] == documented


@pytest.mark.stores("sqlite")
def test_the_check_before_each_append_reads_two_index_ends_not_the_log(views: Runner) -> None:
    # The check that no leaf was deleted runs before every page the log appends: with both
    # MAXes in one SELECT, SQLite scanned every leaf (15 ms a write at 98k events). Counted in
    # SQLite's VM steps, which do not depend on the machine: 20,000 leaves cost what 10 do.
    def steps(cur: Any, read_to: int) -> int:
        counted = [0]

        def count() -> int:
            counted[0] += 1
            return 0

        conn = cur.raw.connection
        conn.set_progress_handler(count, 100)
        try:
            assert leaves_altered(cur, read_to) is None
        finally:
            conn.set_progress_handler(None, 100)
        return counted[0]

    with views.store.transaction() as cur:
        cur.executemany("INSERT INTO audit_leaves VALUES (?, ?, ?)",
                        [(i, i + 1, bytes(32)) for i in range(10)])
        few = steps(cur, 10)
        cur.executemany("INSERT INTO audit_leaves VALUES (?, ?, ?)",
                        [(i, i + 1, bytes(32)) for i in range(10, 20_000)])
        many = steps(cur, 20_000)
        cur.execute("DELETE FROM audit_leaves")
    assert many <= few + 2, (few, many)
