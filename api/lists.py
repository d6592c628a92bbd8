"""Ranked lists as their first page saw them, kept in the store for every API process.

A ranked list (rankings, bulletins, eligibility) can change with any event, so its pages come
from the version its first page was cut from (api/schemas.paginate_ranked). A process keeps
the versions it served in memory; the next page may reach another worker, which then finds the
version here. Before this, a client walking a ranking with two workers and writes going on got
a 409 `list-changed` on about every other page.

Kept for an hour and at most `LISTS` versions (the newest): a cursor older than that, whose
list changed since, answers 409 and the client reads the list again from its first page.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from projections.runner import LOCK_NAME
from projections.store import ViewStore

log = logging.getLogger(__name__)

KEEP_SECONDS = 3600.0
LISTS = 200
WAIT_SECONDS = 1.0  # for a write turn: a list not kept in the store is still kept in memory
# Writers of list versions take turns with each other only (on SQLite, every writer does).
KEEPING = "vledger-list-versions"

DDL = ("CREATE TABLE IF NOT EXISTS list_versions (digest TEXT PRIMARY KEY, "
       "position BIGINT NOT NULL, items TEXT NOT NULL, kept_at DOUBLE PRECISION NOT NULL)")


class StoredLists:
    """The store's table of list versions, by digest."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store
        # Under the views' lock, as the audit table's: two workers starting on an empty
        # PostgreSQL schema would both create it, and one would fail.
        with store.transaction(lock=LOCK_NAME) as cur:
            cur.execute(DDL)

    def keep(self, digest: str, position: int, items: list[Any]) -> None:
        """Keep a version (once per digest), and forget the old ones. A store too busy to
        take it within a second is logged and skipped: this process still holds it."""
        now = time.time()
        try:
            with self.store.transaction(lock=KEEPING, wait=WAIT_SECONDS) as cur:
                cur.execute("INSERT INTO list_versions (digest, position, items, kept_at) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                            (digest, position, orjson.dumps(items).decode(), now))
                cur.execute("DELETE FROM list_versions WHERE kept_at < ? OR digest NOT IN "
                            "(SELECT digest FROM list_versions ORDER BY kept_at DESC LIMIT ?)",
                            (now - KEEP_SECONDS, LISTS))
        except Exception as error:  # StoreBusy, a store gone: the walk may still reach us
            log.warning("a list version was not kept in the store: %s: %s",
                        type(error).__name__, error)

    def find(self, digest: str) -> tuple[int, list[Any]] | None:
        """A version kept by any process within the hour, if any."""
        rows = self.store.query("SELECT position, items FROM list_versions "
                                "WHERE digest = ? AND kept_at >= ?",
                                (digest, time.time() - KEEP_SECONDS))
        if not rows:
            return None
        position, items = rows[0]
        return int(position), orjson.loads(items)
