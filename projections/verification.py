"""A full audit of the log: every leaf, subtree hash and root recomputed from the stored events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from ledger.errors import AuditLogAltered
from ledger.eventseals import EventSeals, leaf_bytes
from ledger.loading import state_bytes
from projections.audit import (
    STORED_LEVEL,
    Auditor,
    altered_log,
    notification_leaf_hash,
    unsealed_among,
)
from projections.merkle import EMPTY_ROOT, Frontier, verify_consistency
from projections.signing import verify_checkpoint
from projections.store import ViewStore

PAGE_SIZE = 2000


@dataclass(frozen=True)
class Check:
    """One thing the verification compared, and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    """Everything a verification found, and how long it took."""

    events: int = 0
    leaves: int = 0
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    # The positions of the events that no longer give their logged leaf (changed, deleted,
    # or never logged below the log's end), in order.
    altered: list[int] = field(default_factory=list)
    # The positions of the events at or after the start of sealing without the ledger's seal
    # (ledger/eventseals.py: written or changed by hand), when the seals were checked.
    unsealed: list[int] = field(default_factory=list)
    # Those of them with no seal row at all (deleted, or written before seals).
    seals_missing: list[int] = field(default_factory=list)

    @property
    def unsealed_checked(self) -> bool:
        """Whether the seals were checked (and held)."""
        return any(c.name == "seals" and c.ok for c in self.checks)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))


@dataclass
class _Tally:
    compared: int = 0
    bad: list[str] = field(default_factory=list)

    def see(self, ok: bool, what: str) -> None:
        self.compared += 1
        if not ok:
            self.bad.append(what)

    def detail(self, noun: str) -> str:
        if not self.bad:
            return f"{self.compared} {noun} match"
        return f"{len(self.bad)} of {self.compared} {noun} differ, first: {', '.join(self.bad[:3])}"


def _leaves_between(store: ViewStore, low: int, high: int) -> dict[int, bytes]:
    """The logged leaf hash of each position from `low` to `high`, by position: an event is
    compared with the leaf of its own position, so one deleted from the middle is named
    itself, not every event after it (bb36 F2: compared by order, one deleted event made
    36,800 later ones "altered")."""
    if high < low:
        return {}
    with store.reading() as cur:
        rows = cur.execute("SELECT position, leaf_hash FROM audit_leaves "
                           "WHERE position BETWEEN ? AND ?", (low, high)).fetchall()
    return {int(p): bytes(h) for p, h in rows}


def _against_the_log(recorder: ApplicationRecorder, store: ViewStore, page_size: int,
                     logged_to: int, read_on: Callable[[int], bool]
                     ) -> Iterator[tuple[Sequence[Any], list[bytes], dict[int, str]]]:
    """The stored events page by page from the first, each page with its events' leaf hashes
    and the positions in it that no longer match the audit log, each compared with the leaf of
    its own position: {position: how} ("" changed, or not logged below the log's last position,
    or logged and gone from the store). Pages go on to the log's last position, and on while
    `read_on(events read)`; a last page without events gives the logged events gone after the
    last one stored (bb33 F4). verify_log and altered_events both read the log so."""
    after = read = 0
    while after < logged_to or read_on(read):
        page = recorder.select_notifications(after + 1, page_size)
        if not page:
            break
        stored = _leaves_between(store, after + 1, min(page[-1].id, logged_to))
        after = page[-1].id
        hashes = [notification_leaf_hash(n) for n in page]
        wrong: dict[int, str] = {}
        for n, h in zip(page, hashes, strict=True):
            if n.id <= logged_to:
                leaf = stored.pop(n.id, None)
                if leaf != h:
                    wrong[n.id] = "" if leaf is not None else " (an event the log never took in)"
        wrong.update((position, " (deleted from the store)") for position in stored)
        read += len(page)
        yield page, hashes, wrong
    gone = _leaves_between(store, after + 1, logged_to)
    if gone:
        yield [], [], {position: " (deleted from the store)" for position in gone}


def _logged_to(store: ViewStore) -> int:
    """The position of the last event the audit log took in (0 for none)."""
    with store.reading() as cur:
        row = cur.execute("SELECT MAX(position) FROM audit_leaves").fetchone()
    return int(row[0] or 0) if row is not None else 0


def _stored_nodes(store: ViewStore,
                  made: dict[int, dict[int, bytes]]) -> dict[tuple[int, int], bytes]:
    """The stored subtree hashes of the levels and index ranges just recomputed, in one read."""
    if not made:
        return {}
    where = " OR ".join("(level = ? AND idx BETWEEN ? AND ?)" for _ in made)
    params = [p for lv, ix in made.items() for p in (lv, min(ix), max(ix))]
    with store.reading() as cur:
        rows = cur.execute(f"SELECT level, idx, hash FROM audit_nodes WHERE {where}",
                           params).fetchall()
    return {(int(lv), int(i)): bytes(h) for lv, i, h in rows}


def verify_log(recorder: ApplicationRecorder, auditor: Auditor, public_key_pem: str | None,
               against: Mapping[str, Any] | None = None, page_size: int = PAGE_SIZE,
               progress: Callable[[int], None] | None = None, sign: bool = False,
               seals: EventSeals | None = None) -> Report:
    """Recompute the log from the event store; compare with the stored view and checkpoints.

    It reads only: the checkpoints compared are the one the store last published and
    `against` (one saved earlier, outside the operator's reach), checked with
    `public_key_pem`. `sign` (the operator, with the signing key): also sign and publish a
    checkpoint of the tree as it stands, once every other check passed (`report.checkpoint`).
    Without it, `report.checkpoint` is the published checkpoint, if it verified. With `seals`
    (the signing key's holder: seals are MACs), also every event's seal."""
    started = time.perf_counter()
    report = Report(leaves=auditor.size())
    size = report.leaves
    old_size = int(against["tree_size"]) if against is not None else None
    published = auditor.published()
    published_size = int(published["tree_size"]) if published is not None else None
    try:  # the checkpoint kept beside the signing key, where this host holds it (bb38 F11)
        kept, unreadable = auditor.kept_checkpoint(), None
    except AuditLogAltered as error:
        kept, unreadable = None, str(error)
    # The roots of the earlier trees to compare (a saved, a published and a kept checkpoint's).
    frontier, roots = Frontier(), {0: EMPTY_ROOT}
    wanted = {old_size, published_size, kept["tree_size"] if kept is not None else None}
    leaves, nodes = _Tally(), _Tally()
    logged_to = _logged_to(auditor.store)
    for page, hashes, wrong in _against_the_log(recorder, auditor.store, page_size, logged_to,
                                                lambda _read: True):
        made: dict[int, dict[int, bytes]] = {}
        for n, h in zip(page, hashes, strict=True):
            report.events += 1
            if n.id > logged_to:  # newer than the log: lag, not a mismatch
                continue
            leaves.see(n.id not in wrong, f"position {n.id}{wrong.get(n.id, '')}")
            for level, index, value in frontier.append(h):
                if level >= STORED_LEVEL:  # smaller blocks are not stored, only their leaves
                    made.setdefault(level, {})[index] = value
            if frontier.size in wanted:
                roots[frontier.size] = frontier.root()
        for position in sorted(set(wrong) - {n.id for n in page}):  # logged, and gone
            leaves.see(False, f"position {position}{wrong[position]}")
        report.altered += wrong
        if seals is not None and page:
            with auditor.store.reading() as cur:
                report.unsealed += unsealed_among(cur, seals, [
                    (n.id, leaf_bytes(n.id, str(n.originator_id), n.originator_version,
                                      n.topic, state_bytes(n.state))) for n in page],
                    report.seals_missing)
        stored = _stored_nodes(auditor.store, made)
        for level, hashes_made in made.items():
            for index, value in hashes_made.items():
                nodes.see(stored.get((level, index)) == value, f"level {level} index {index}")
        if progress is not None and page:
            progress(report.events)
    report.altered.sort()
    report.add("leaves", not leaves.bad, leaves.detail("leaf hashes"))
    report.add("subtree hashes", not nodes.bad, nodes.detail("subtree hashes"))
    if seals is not None:
        report.add("seals", not report.unsealed,
                   _seals_detail(report, logged_to, position_of(auditor.store, published_size)))
    root = frontier.root()
    try:
        report.add("root", auditor.root(size) == root,
                   f"tree of {size}: recomputed root {root.hex()[:16]}…")
    except AuditLogAltered as missing:  # leaves or hashes deleted: the root is not there
        report.add("root", False, str(missing))
    old_root = roots.get(old_size) if old_size is not None else None
    if published is not None:  # what this store published last, recomputed from the events
        published_root = roots.get(int(published["tree_size"]))
        same = published_root is not None and published_root.hex() == published["root_hash"]
        signed = public_key_pem is not None and verify_checkpoint(public_key_pem, published)
        report.add("published checkpoint", same and signed,
                   (f"tree_size {published_size}, signed_at {published['signed_at']}, key "
                    f"{published['key_id']}" + ("" if signed else ": the signature does not "
                                                "verify with the public key given"))
                   if same else f"the events no longer give the root of the checkpoint of "
                                f"{published_size} leaves published at {published['signed_at']}")
        if same and signed:
            report.checkpoint = published
    if unreadable is not None:
        report.add("kept checkpoint", False, unreadable)
    elif kept is not None:
        report.add("kept checkpoint", *_kept_found(kept, published, roots, public_key_pem))
    if against is not None:
        _check_against(report, auditor, public_key_pem, against, old_root, root)
    if sign and report.ok:
        try:
            checkpoint = auditor.checkpoint(size)
        except AuditLogAltered as refused:
            report.add("new checkpoint", False, f"not signed: {refused}")
        else:
            report.checkpoint = checkpoint
            report.add("new checkpoint", checkpoint["root_hash"] == root.hex(),
                       f"signed with key {checkpoint['key_id']}, tree_size {size}")
    # Leaves deleted (or added) by hand are not lag: the view has read those events and will
    # never log them again (bb26 F1).
    altered = altered_log(auditor.store)
    report.add("leaves kept", altered is None,
               altered or "the audit log holds a leaf for every event its view has read")
    if report.events > size and altered is None:
        report.add("lag", True, f"{report.events - size} newer events are not in the audit log yet")
    report.seconds = time.perf_counter() - started
    return report


def _kept_found(kept: Mapping[str, Any], published: Mapping[str, Any] | None,
                roots: Mapping[int, bytes], public_key_pem: str | None) -> tuple[bool, str]:
    """Whether the store still holds the checkpoint kept beside the signing key (or a later
    one), the events still give its root, and it bears the key's signature; and the detail."""
    size = int(kept["tree_size"])
    signed = f"the checkpoint of {size} events signed at {kept['signed_at']}"
    if published is None or int(published["tree_size"]) < size:
        return False, (f"{signed}, kept beside the signing key, is not in the store: published "
                       "checkpoints were deleted")
    if int(published["tree_size"]) == size and published["root_hash"] != kept["root_hash"]:
        return False, (f"{signed}, kept beside the signing key, is not in the store: the "
                       "published one of as many events was replaced in the database")
    root = roots.get(size)
    if root is None or root.hex() != kept["root_hash"]:
        return False, (f"the events no longer give the root of {signed}, kept beside the "
                       "signing key")
    if public_key_pem is None or not verify_checkpoint(public_key_pem, kept):
        return False, (f"{signed}, kept beside the signing key, does not verify with the "
                       f"public key given (it names key {kept['key_id']})")
    return True, f"{signed}, kept beside the signing key, is in the store and extended"


def position_of(store: ViewStore, tree_size: int | None) -> int:
    """The position of the last event a tree of `tree_size` leaves holds (0 for none)."""
    if not tree_size:
        return 0
    with store.reading() as cur:
        row = cur.execute("SELECT position FROM audit_leaves WHERE leaf_index = ?",
                          (tree_size - 1,)).fetchone()
    return int(row[0]) if row is not None else 0


def _seals_detail(report: Report, logged_to: int, signed_to: int) -> str:
    """What the seals check found (bb39 F6: an event a signed checkpoint vouches for whose
    seal row was lost is not one written by hand; bb40 F1: one the log took in after the last
    checkpoint, without a seal, may be)."""
    if not report.unsealed:
        return "every event carries the ledger's seal"
    altered, rowless = set(report.altered), set(report.seals_missing)
    lost = [p for p in report.unsealed if p <= signed_to and p not in altered and p in rowless]
    unsigned = [p for p in report.unsealed
                if signed_to < p <= logged_to and p not in altered and p in rowless]
    forged = [p for p in report.unsealed if p > logged_to or p in altered]
    changed = [p for p in report.unsealed if p not in set(lost) | set(unsigned) | set(forged)]
    said = []
    if lost:
        said.append(f"{len(lost)} event(s) the audit log took in, and still match their "
                    f"leaves, have no seal (first at position(s) "
                    f"{', '.join(map(str, lost[:3]))}), within the last signed checkpoint: "
                    "their seals were deleted (restore event_seals from a backup), or the "
                    "store was written before seals (`vledger seal` seals them, once)")
    if unsigned:
        said.append(f"{len(unsigned)} event(s) the audit log took in after its last signed "
                    f"checkpoint carry no seal (first at position(s) "
                    f"{', '.join(map(str, unsigned[:3]))}): their leaves were written by a "
                    "version that does not check seals, or by hand; no signature vouches for "
                    "them, so `vledger seal` does not seal them: delete them, then rebuild "
                    "every view (`vledger projections rebuild`)")
    if changed:
        said.append(f"{len(changed)} event(s) the audit log took in no longer match their seals "
                    f"(first at position(s) {', '.join(map(str, changed[:3]))}): the event, "
                    "with its leaf, or its seal was changed by hand after it was sealed")
    if forged:
        said.append(f"{len(forged)} event(s) the audit log has not taken in (or that no longer "
                    f"match their leaves) carry no seal (first at position(s) "
                    f"{', '.join(map(str, forged[:3]))}): written into the store, or changed "
                    "there, by hand; no view counts them")
    return "; ".join(said)


def _check_against(report: Report, auditor: Auditor, public_key_pem: str | None,
                   saved: Mapping[str, Any], old_root: bytes | None, root: bytes) -> None:
    old_size = int(saved["tree_size"])
    report.add("saved checkpoint signature",
               public_key_pem is not None and verify_checkpoint(public_key_pem, saved),
               f"tree_size {old_size}, signed_at {saved.get('signed_at')}")
    if old_root is None:
        report.add("saved checkpoint root", False,
                   f"no tree of {old_size} leaves to compare: the audit log holds "
                   f"{report.leaves}, the store {report.events} events")
        return
    same = old_root.hex() == saved.get("root_hash")
    report.add("saved checkpoint root", same,
               f"recomputed root of {old_size} leaves {old_root.hex()[:16]}…")
    if old_size == 0 or not same:
        return
    proof = auditor.consistency(old_size, report.leaves)["hashes"]
    consistent = verify_consistency(old_size, report.leaves, bytes.fromhex(str(saved["root_hash"])),
                                    root, [bytes.fromhex(h) for h in proof])
    report.add("consistency proof", consistent,
               f"{old_size} → {report.leaves} leaves, {len(proof)} hashes")


def altered_events(recorder: ApplicationRecorder, auditor: Auditor, page_size: int = PAGE_SIZE,
                   first: int = 3, root_of: int | None = None
                   ) -> tuple[int, list[int], bytes | None]:
    """How many logged events no longer give the leaf the audit log holds for them (stored
    after they were logged, then changed or deleted in the database), the positions of the
    first few, and (with `root_of`) the Merkle root of that many stored events recomputed from
    their bytes (None when the store holds fewer). Each event is compared with the leaf of its
    own position. Only the leaves are compared: the quick part of `verify_log`, which a
    rebuild runs before it replaces the views (and the leaves, the evidence) with what the
    events say now."""
    found, read = 0, 0
    altered: list[int] = []
    frontier, root = Frontier(), None
    for _page, hashes, wrong in _against_the_log(
            recorder, auditor.store, page_size, _logged_to(auditor.store),
            lambda events: root_of is not None and events < root_of):
        found += len(wrong)
        altered.extend(sorted(wrong)[:max(0, first - len(altered))])
        for h in hashes:
            if root_of is not None and read < root_of:
                frontier.append(h)
                if frontier.size == root_of:
                    root = frontier.root()
            read += 1
    if root_of == 0:
        root = EMPTY_ROOT
    return found, altered, root


@dataclass
class Sealed:
    """What `seal_logged` did: events sealed, and events it left unsealed."""

    sealed: int = 0
    already: int = 0
    # The tree size of the signed checkpoint the sealing stopped at.
    signed: int = 0
    # Unsealed events the audit log took in after that checkpoint: no signature vouches for
    # their leaves (an older version, or SQL, may have written them: bb40 F1).
    unsigned: list[int] = field(default_factory=list)
    # Unsealed events the audit log has not taken in (bb39 F1).
    unlogged: list[int] = field(default_factory=list)
    # Events sealed by writes of this version: a store written by it is not sealed again.
    written: int = 0

    @property
    def left(self) -> list[int]:
        """Every event left without a seal."""
        return sorted(self.unsigned + self.unlogged)


def signed_extent(auditor: Auditor, against: Mapping[str, Any] | None = None) -> int:
    """The size of the largest tree a checkpoint signed with the auditor's key vouches for:
    the one published in the store (its signature, and the one kept beside the key, checked
    by `check_published`), or `against` (one saved earlier, e.g. by an auditor), when the log
    still has its root. AuditLogAltered when the log does not extend them."""
    published = auditor.check_published()
    size = int(published["tree_size"]) if published is not None else 0
    if against is not None:
        saved = int(against["tree_size"])
        if not verify_checkpoint(auditor.key.public_key_pem(), against):
            raise AuditLogAltered("the checkpoint given does not bear this store's signature")
        if saved > auditor.size() or auditor.root(saved).hex() != against["root_hash"]:
            raise AuditLogAltered(f"the audit log does not extend the checkpoint given (tree "
                                  f"size {saved}, signed at {against.get('signed_at')})")
        size = max(size, saved)
    return size


def seal_logged(recorder: ApplicationRecorder, auditor: Auditor, seals: EventSeals,
                against: Mapping[str, Any] | None = None,
                page_size: int = PAGE_SIZE) -> Sealed:
    """Seal the stored events a signed checkpoint vouches for that carry no valid seal (a
    store written before seals; seals lost), after refusing (AuditLogAltered) a log that
    does not extend its checkpoints or an event that no longer gives its leaf: such an event
    gains nothing it did not have. An event the log took in after the last signed checkpoint
    (`against`: a later one saved earlier) is not sealed: its leaf may have been written by
    hand, or by a version that does not check seals (bb40 F1); nor is one the log has not
    taken in (bb39 F1)."""
    store = auditor.store
    altered = altered_log(store)
    if altered:
        raise AuditLogAltered(altered)
    done = Sealed(signed=signed_extent(auditor, against))
    found, first, _ = altered_events(recorder, auditor, page_size)
    if found:
        raise AuditLogAltered(
            f"{found} event(s) no longer give the leaf the audit log took in for them (first "
            f"at position(s) {', '.join(map(str, first))}): nothing was sealed; see vledger "
            "verify")
    logged_to = _logged_to(store)
    through = position_of(store, done.signed)
    for page, _hashes, wrong in _against_the_log(recorder, store, page_size, logged_to,
                                                 lambda _read: True):
        if wrong:  # changed meanwhile
            raise AuditLogAltered(f"position(s) {', '.join(map(str, sorted(wrong)[:3]))} no "
                                  "longer give their leaves: sealing stopped; see vledger verify")
        items = [(n.id, leaf_bytes(n.id, str(n.originator_id), n.originator_version, n.topic,
                                   state_bytes(n.state))) for n in page]
        written: list[int] = []
        with store.reading() as cur:
            bad = set(unsealed_among(cur, seals, items, written=written))
        done.already += len(items) - len(bad)
        done.written += len(written)
        done.unlogged += sorted(p for p in bad if p > logged_to)
        done.unsigned += sorted(p for p in bad if through < p <= logged_to)
        todo = [(p, data) for p, data in items if p in bad and p <= through]
        if todo and done.written:
            raise AuditLogAltered(
                f"this store was written by this version (its events carry the seals its writes "
                f"make), and position(s) {', '.join(str(p) for p, _ in todo[:3])} carry none: "
                "`vledger seal` seals only a store written before seals, before any write of "
                "this version. Events without seals in a store written by it were written by "
                "hand, or by an older version run on it (bb42 F2): delete them and rebuild "
                "every view (`vledger projections rebuild --drop-unsigned`); if their seals were "
                "lost, restore event_seals from a backup")
        if todo:
            recorder.store_seals(seals.seal(todo))  # type: ignore[attr-defined]
            done.sealed += len(todo)
    return done
