"""How fast the audit log answers at a large size: roots, checkpoints and proofs.

    .venv/bin/python bench/audit_proofs.py --leaves 1000000 [--postgres URL]

Builds the audit tables from synthetic events (no ledger writes) in a throw-away SQLite file or
PostgreSQL schema, then times requests against the full tree.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ledger.settings import StoreLocation
from projections.audit import AuditLog, Auditor, SigningKey
from projections.feed import FeedEvent
from projections.store import ViewStore


def build(store: ViewStore, leaves: int, page: int = 10_000) -> float:
    started = time.perf_counter()
    log = AuditLog()
    with store.transaction() as cur:
        log.drop(cur)
        log.create(cur)
    state = b'{"volunteer_id":"vol-0123456789abcdef","minutes":120,"source":"bench"}' * 3
    for first in range(0, leaves, page):
        events = [FeedEvent(position=2 * i + 1, originator_id=f"agg-{i}", version=1,
                            type="Bench.Happened", recorded_at="2017-03-05T00:00:00+00:00",
                            data={}, topic="bench:Bench.Happened", state=state)
                  for i in range(first, min(first + page, leaves))]
        with store.transaction() as cur:
            log.apply(cur, events)
    return time.perf_counter() - started


def timed(label: str, call: Callable[[], object], runs: int) -> None:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    print(f"  {label:<34} median {statistics.median(samples):7.2f} ms   "
          f"p95 {samples[int(len(samples) * 0.95) - 1]:7.2f} ms   max {samples[-1]:7.2f} ms")


def bench(location: StoreLocation, leaves: int, runs: int, key_dir: Path) -> None:
    store = ViewStore(location)
    try:
        seconds = build(store, leaves)
        print(f"{location.describe()}: built {leaves:,} leaves in {seconds:.1f} s "
              f"({leaves / seconds:,.0f} leaves/s)")
        auditor = Auditor(store, SigningKey.load(key_dir / "bench-key.pem"))
        rnd = random.Random(1)
        timed("checkpoint (full size, signed)", auditor.checkpoint, runs)
        timed("root at a random size", lambda: auditor.root(rnd.randint(1, leaves)), runs)
        timed("inclusion, random leaf, full tree",
              lambda: auditor.inclusion(2 * rnd.randrange(leaves) + 1, leaves), runs)
        timed("inclusion, random leaf and size", lambda: _inclusion(auditor, rnd, leaves), runs)
        timed("consistency, random first, full",
              lambda: auditor.consistency(rnd.randint(1, leaves), leaves), runs)
        timed("consistency, random first and second",
              lambda: auditor.consistency(*sorted(rnd.sample(range(1, leaves + 1), 2))), runs)
    finally:
        store.close()


def _inclusion(auditor: Auditor, rnd: random.Random, leaves: int) -> object:
    size = rnd.randint(1, leaves)
    return auditor.inclusion(2 * rnd.randrange(size) + 1, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--postgres", help="a PostgreSQL URL; a throw-away schema is used")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            import psycopg

            schema = f"bench_{uuid.uuid4().hex[:10]}"
            loc = StoreLocation.parse(args.postgres)
            conninfo = loc.connect_kwargs()
            with psycopg.connect(**conninfo) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            try:
                bench(StoreLocation.parse(f"{args.postgres}?schema={schema}"), args.leaves,
                      args.runs, Path(tmp))
            finally:
                with psycopg.connect(**conninfo) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        else:
            bench(StoreLocation.parse(f"sqlite:///{tmp}/bench.db"), args.leaves, args.runs,
                  Path(tmp))


if __name__ == "__main__":
    main()
