"""Ranked lists as their first page saw them, kept in the store for every API process.

A ranked list (rankings, bulletins, eligibility) can change with any event, so its pages come
from the version its first page was cut from (api/schemas.paginate_ranked). A process keeps
the versions it served in memory; the next page may reach another worker, which then finds the
version here. Before this, a client walking a ranking with two workers and writes going on got
a 409 `list-changed` on about every other page.

Kept for an hour, at most `LISTS` versions and `MAX_BYTES` of them (the newest), compressed: a
cursor older than that, whose list changed since, answers 409 and the client reads the list
again from its first page. The bound in bytes is bb23's: the first page of a list after any
write stores a version, and anyone may read the public rankings, so a portal showing the "top
10" of 5,000 communities while clerks recorded sessions grew the store by 0.9 MB a read (an
eligibility list of 20,000 candidates: 8.8 MB), up to 200 versions.
"""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any

import orjson

from projections.runner import LOCK_NAME
from projections.store import ViewStore

log = logging.getLogger(__name__)

KEEP_SECONDS = 3600.0
LISTS = 200
# Of compressed versions, in all. An eligibility list of 44,000 candidates keeps 1.5 MB: at
# 32 MB a committee's walk lost its version after 21 writes-and-first-pages (bb34 F2).
MAX_BYTES = 128 * 1024 * 1024
WAIT_SECONDS = 1.0  # for a write turn: a list not kept in the store is still kept in memory
# Writers of list versions take turns with each other only (on SQLite, every writer does).
KEEPING = "vledger-list-versions"

# `items`: the list as JSON, zlib-compressed; `size`: its compressed bytes. (`list_versions`,
# the table before, held uncompressed JSON: its versions are dropped, the walks they served
# start again.)
DDL = ("CREATE TABLE IF NOT EXISTS kept_lists (digest TEXT PRIMARY KEY, "
       "position BIGINT NOT NULL, items {blob} NOT NULL, size BIGINT NOT NULL, "
       "kept_at DOUBLE PRECISION NOT NULL)")


class StoredLists:
    """The store's table of list versions, by digest."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store
        # Under the views' lock, as the audit table's: two workers starting on an empty
        # PostgreSQL schema would both create it, and one would fail.
        with store.transaction(lock=LOCK_NAME) as cur:
            cur.execute(DDL.format(blob="BYTEA" if cur.postgres else "BLOB"))
            cur.execute("DROP TABLE IF EXISTS list_versions")

    def keep(self, digest: str, position: int, items: list[Any]) -> None:
        """Keep a version (once per digest), and forget the old ones. A store too busy to
        take it within a second is logged and skipped: this process still holds it."""
        now = time.time()
        # Measured: a 5,000-unit ranking to a quarter (4 ms), 20,000 candidates to a ninth (28 ms)
        packed = zlib.compress(orjson.dumps(items), 1)
        try:
            with self.store.transaction(lock=KEEPING, wait=WAIT_SECONDS) as cur:
                cur.execute("INSERT INTO kept_lists (digest, position, items, size, kept_at) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                            (digest, position, packed, len(packed), now))
                kept = cur.execute("SELECT digest, size, kept_at FROM kept_lists "
                                   "ORDER BY kept_at DESC").fetchall()
                total, gone = 0, []
                for n, (old, size, kept_at) in enumerate(kept):
                    total += int(size)
                    if n >= LISTS or total > MAX_BYTES or kept_at < now - KEEP_SECONDS:
                        gone.append(old)
                if gone:
                    condition, values = cur.one_of("digest", gone)
                    cur.execute(f"DELETE FROM kept_lists WHERE {condition}", (values,))
        except Exception as error:  # StoreBusy, a store gone: the walk may still reach us
            log.warning("a list version was not kept in the store: %s: %s",
                        type(error).__name__, error)

    def find(self, digest: str) -> tuple[int, list[Any]] | None:
        """A version kept by any process within the hour, if any."""
        rows = self.store.query("SELECT position, items FROM kept_lists "
                                "WHERE digest = ? AND kept_at >= ?",
                                (digest, time.time() - KEEP_SECONDS))
        if not rows:
            return None
        position, items = rows[0]
        return int(position), orjson.loads(zlib.decompress(bytes(items)))
