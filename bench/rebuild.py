"""Rebuild benchmark: fill a store with about N events, then time a rebuild of every read model.

    python bench/rebuild.py fill URL 1000000     # record sessions (and some fixes) until N events
    python bench/rebuild.py measure URL [--all]  # raw read speed, then the rebuild, peak memory

`measure` runs in its own process so its peak RSS is the rebuild's. `--all` adds the history
and audit views the API also keeps.
"""

from __future__ import annotations

import contextlib
import random
import resource
import sys
import time
from datetime import date, datetime, timedelta, timezone

from ledger import SYSTEM, Ledger, LedgerError, Origin, SessionRecord, Settings
from projections.feed import decode_page
from projections.models import ReadModels
from projections.runner import PAGE_SIZE, Projection

CST = timezone(timedelta(hours=8))
ORIGIN = Origin(SYSTEM, "bench")


def fill(url: str, target: int) -> None:
    """Record batches of sessions, with a few corrections, voids and transfers, up to `target`."""
    ledger = Ledger(Settings(database_url=url))
    ledger.ensure_catalogue()
    rng = random.Random(7)
    towns = [ledger.register_unit(ORIGIN, f"town {i}", "town").id for i in range(5)]
    units = [ledger.register_unit(ORIGIN, f"community {i}", "community",
                                  parent_id=towns[i % 5]).id for i in range(40)]
    codes = ["A1", "A2", "B3", "B6", "C1", "C4"]
    start = datetime(2017, 1, 1, tzinfo=CST)
    activities = [ledger.plan_activity(ORIGIN, codes[i % 6], units[i % 40], f"act {i}", start,
                                       start + timedelta(days=729)).id for i in range(60)]
    people = [ledger.register_volunteer(ORIGIN, f"v{i}", units[i % 40], date(2017, 1, 1))[0].id
              for i in range(2000)]
    slot = dict.fromkeys(people, 0)
    serial, sessions = 0, list[str]()
    began = time.perf_counter()
    while ledger.head() < target:
        records = []
        for _ in range(1000):
            who = rng.choice(people)
            slot[who] += 1
            begin = start + timedelta(hours=3 * slot[who])
            serial += 1
            records.append(SessionRecord(who, rng.choice(activities), begin,
                                         begin + timedelta(minutes=rng.randint(30, 150)),
                                         f"bench-{serial}"))
        result = ledger.record_sessions(ORIGIN, records)
        sessions.extend(o.session_id for o in result.outcomes if o.session_id)
        for _ in range(10):
            sid = sessions.pop(rng.randrange(len(sessions)))
            ledger.void_session(ORIGIN, sid, "bench void")
        for _ in range(5):
            who = rng.choice(people)
            with contextlib.suppress(LedgerError):  # e.g. already in that unit on that day
                ledger.transfer_volunteer(ORIGIN, who, rng.choice(units),
                                          date(2017, 1, 2) + timedelta(days=rng.randrange(600)))
        print(f"\r{ledger.head():,} events, {ledger.head() / (time.perf_counter() - began):,.0f}"
              " events/s", end="", file=sys.stderr)
    print(file=sys.stderr)
    ledger.close()


def measure(url: str, everything: bool) -> None:
    """Print raw read speed, rebuild speed and peak memory."""
    ledger = Ledger(Settings(database_url=url))
    head = ledger.head()
    began, position = time.perf_counter(), 0
    while True:
        page = ledger.recorder.select_notifications(position + 1, PAGE_SIZE)
        if not page:
            break
        decode_page(page)
        position = page[-1].id
    raw = head / (time.perf_counter() - began)
    extra: list[Projection] = []
    if everything:
        from projections.audit import AuditLog
        from projections.history import HistoryIndex

        extra = [HistoryIndex(), AuditLog()]
    models = ReadModels(ledger, extra=extra)
    began = time.perf_counter()
    models.runner.rebuild()
    took = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{head:,} events: raw library read (select_notifications) {raw:,.0f} events/s; "
          "rebuild "
          f"{[p.name for p in models.runner.projections]} {head / took:,.0f} events/s "
          f"({took:.1f} s, {head / took / raw:.2f}x raw); peak RSS {peak:,.0f} MB")
    models.close()
    ledger.close()


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(sys.argv[2], int(sys.argv[3]))
    else:
        measure(sys.argv[2], "--all" in sys.argv)
