"""The audit sweep: the server recomputes every logged event's leaf, now and then, by itself.

`vledger verify` finds an event changed or deleted in the database after it was logged, but
only when someone runs it; a history or the feed refuses such an event only when it is asked
for; a server checks the published checkpoint's O(log n) subtree hashes when it starts, which
a changed event under intact leaves passes (bb33). The sweep closes that gap for the office:
every `VLEDGER_AUDIT_SWEEP_SECONDS` (default an hour) one process of the deployment runs what
`vledger verify` runs (projections/verification.py `verify_log`): it reads every event,
compares its leaf with the one the audit log took in, recomputes the stored subtree hashes
inclusion proofs are built from (bb38 F6: a zeroed one was served while the sweep compared
leaves only) and the root of the last published checkpoint from the events' bytes, and
checks its signature; and records what it found, which every worker's `/readyz` and
`/metrics` report (`audit.sweep`, `vledger_audit_altered_events`) and the log names at ERROR.

Which process sweeps is settled in the store: a sweep is claimed by moving `claimed_at`
forward in one conditional UPDATE, which only one claimant wins, on SQLite as on PostgreSQL;
a process that dies mid-sweep leaves a claim that expires after one interval. A new store's
first sweep comes one interval after its first server started (a fresh start already checks
the checkpoint), and restarts do not move the clock. The sweep reads a page of events at a
time and lets requests run in between: at 1,000,000 events it takes seconds of one core.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.audit import Auditor
from projections.runner import LOCK_NAME
from projections.signing import verify_checkpoint
from projections.store import ViewStore
from projections.verification import verify_log

log = logging.getLogger("vledger.audit")

DDL = ("CREATE TABLE IF NOT EXISTS audit_sweeps (one INTEGER PRIMARY KEY, "
       "claimed_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION, "
       "events BIGINT, altered BIGINT, first_altered TEXT, detail TEXT)")
CLAIM_SQL = ("UPDATE audit_sweeps SET claimed_at = ? WHERE one = 1 AND claimed_at <= ?")
FIRST = 10  # altered positions named, at most
PAUSE_SECONDS = 0.002  # between pages: requests waiting for the GIL run


class SweepStopped(Exception):
    """The process is stopping: the sweep gives up, and records nothing."""


@dataclass(frozen=True)
class SweepResult:
    """What one sweep found: `altered` logged events whose bytes no longer give their leaf
    (changed or deleted), the first of them, and `detail` (empty when all is well)."""

    finished_at: float
    events: int
    altered: int
    first_altered: tuple[int, ...]
    detail: str

    @property
    def ok(self) -> bool:
        return not self.altered and not self.detail

    def as_json(self) -> dict[str, Any]:
        return {"finished_at": datetime.fromtimestamp(self.finished_at, UTC).isoformat(),
                "events": self.events, "ok": self.ok, "altered": self.altered,
                "first_altered": list(self.first_altered), "detail": self.detail or None}


class Sweeper:
    """Claims, runs and records audit sweeps for one process."""

    def __init__(self, recorder: Any, auditor: Auditor, interval: float) -> None:
        self.recorder = recorder
        self.auditor = auditor
        self.store: ViewStore = auditor.store
        self.interval = interval
        with self.store.transaction(lock=LOCK_NAME) as cur:
            cur.execute(DDL)
            # The clock of a new store starts now: its first sweep is an interval away.
            cur.execute("INSERT INTO audit_sweeps (one, claimed_at) VALUES (1, ?) "
                        "ON CONFLICT (one) DO NOTHING", (time.time(),))

    def claim(self, now: float | None = None) -> bool:
        """Take the next sweep, if it is due and no other process took it."""
        now = time.time() if now is None else now
        with self.store.transaction() as cur:
            cur.execute(CLAIM_SQL, (now, now - self.interval))
            return bool(cur.raw.rowcount == 1)

    def sweep(self, stopping: Callable[[], bool] = lambda: False) -> SweepResult:
        """Recompute every logged event's leaf and the published checkpoint's root, and record
        what was found (SweepStopped, recording nothing, when `stopping()` turns true)."""
        def between_pages(_read: int) -> None:
            if stopping():
                raise SweepStopped
            time.sleep(PAUSE_SECONDS)

        report = verify_log(self.recorder, self.auditor, self.auditor.key.public_key_pem(),
                            progress=between_pages, seals=getattr(self.recorder, "seals", None))
        altered = report.altered
        count, first = len(altered), altered[:FIRST]
        details = []
        if count == 1:
            details.append(f"1 logged event no longer hashes to its leaf (position "
                           f"{first[0]}): changed or deleted in the store after it was "
                           "logged; run vledger verify")
        elif count:
            details.append(f"{count} logged events no longer hash to their leaves (first at "
                           f"positions {', '.join(map(str, first))}): changed or deleted in "
                           "the store after they were logged; run vledger verify")
        if report.unsealed:  # bb38 F2: events the ledger did not write (or seals lost)
            details.append(next(c.detail for c in report.checks if c.name == "seals"))
        failed = {c.name: c.detail for c in report.checks if not c.ok}
        published = self.auditor.published()
        if "published checkpoint" in failed and published is not None:
            if not verify_checkpoint(self.auditor.key.public_key_pem(), published):
                details.append(f"the checkpoint the store holds as published (tree_size "
                               f"{published['tree_size']}) does not bear this server's "
                               f"signature (key {self.auditor.key.key_id}): it was replaced "
                               "in the database")
            else:
                details.append(f"the first {published['tree_size']} events no longer have "
                               "the root of the checkpoint published at "
                               f"{published['signed_at']}")
        if "subtree hashes" in failed and not count:  # bb38 F6: the events are intact
            details.append(f"the audit log's stored subtree hashes are not those of its "
                           f"events ({failed['subtree hashes']}): changed in the database, "
                           "so inclusion proofs built on them cannot verify; `vledger "
                           "projections rebuild audit` makes them again from the events")
        if "kept checkpoint" in failed:  # bb38 F11: the published row deleted
            details.append(failed["kept checkpoint"])
        if "leaves kept" in failed:
            details.append(failed["leaves kept"])
        # Events the ledger did not write count as altered too (metric, /readyz).
        wrong = sorted(set(altered) | set(report.unsealed))
        result = SweepResult(time.time(), report.leaves, len(wrong), tuple(wrong[:FIRST]),
                             "; ".join(details))
        self._record(result)
        return result

    def _record(self, result: SweepResult) -> None:
        with self.store.transaction() as cur:
            cur.execute("UPDATE audit_sweeps SET finished_at = ?, events = ?, altered = ?, "
                        "first_altered = ?, detail = ? WHERE one = 1",
                        (result.finished_at, result.events, result.altered,
                         ",".join(map(str, result.first_altered)), result.detail))
        if result.ok:
            log.info("audit sweep: all %d logged events still give their leaves", result.events)
        else:
            log.error("audit sweep: the store was altered: %s", result.detail)

    def run(self, stop: threading.Event, poll: float | None = None) -> None:
        """Until `stop`: sweep whenever one is due and this process wins the claim."""
        poll = min(self.interval, 60.0) if poll is None else poll
        while not stop.wait(poll):
            try:
                if self.claim():
                    self.sweep(stop.is_set)
            except SweepStopped:
                return
            except Exception as error:  # a store that does not answer: try at the next turn
                log.warning("audit sweep failed: %s: %s", type(error).__name__, error)


def last_sweep(store: ViewStore) -> SweepResult | None:
    """The last finished sweep of this store, if any (None also where none could run yet)."""
    with store.reading() as cur:
        if not store.has_table(cur, "audit_sweeps"):  # no server has swept this store yet
            return None
        row = cur.execute("SELECT finished_at, events, altered, first_altered, detail "
                          "FROM audit_sweeps WHERE one = 1").fetchone()
    if row is None or row[0] is None:
        return None
    first = tuple(int(p) for p in str(row[3] or "").split(",") if p)
    return SweepResult(float(row[0]), int(row[1]), int(row[2]), first, str(row[4] or ""))
