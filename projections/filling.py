"""Filling a view from empty in bulk, then keeping it page by page.

A rebuild (or a first start on a full store) folds every session of the ledger into a view
whose tables are empty. Upserting each page's changes into them costs several B-tree lookups
per session; appending the sessions' facts to a staging table and grouping them once at the end
costs a fraction of that. So a view created empty carries a flag row: while it is there, pages
append facts, and the runner's `settle()` (called in the transaction of a catch-up's last page)
turns the facts into the view's rows with a few `INSERT … SELECT … GROUP BY` statements and
clears the flag. A crash mid-fill keeps the flag and the facts committed so far, so the next
catch-up goes on filling. After that, pages keep the view up to date one change at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ledger.errors import ViewsBehind
from projections.store import ViewCursor

# The year and quarter of an ISO service date, in SQL both stores run.
YEAR_SQL = "CAST(substr(service_date, 1, 4) AS INTEGER)"
QUARTER_SQL = "(CAST(substr(service_date, 6, 2) AS INTEGER) + 2) / 3"
SETTLE_WORK_MEM = "256MB"


class Filling:
    """The fill state of one view: its flag table (`<view>_filling`, which the view's `drop`
    must drop), the statements that settle it, and whether a settle is due."""

    def __init__(self, view: str, first_table: str, statements: Sequence[str]) -> None:
        self.flag = f"{view}_filling"
        self.first_table = first_table  # the view is empty when this table is
        self.statements = tuple(statements)
        self._due = False
        self._known: bool | None = None

    @contextmanager
    def known(self, filling: bool) -> Iterator[None]:
        """Within a transaction whose caller read the flag already (the runner reads every
        view's with their positions): `active` answers that, without a statement of its own."""
        self._known = filling
        try:
            yield
        finally:
            self._known = None

    def create(self, cur: ViewCursor) -> None:
        """Called after the view's tables are created: an empty view starts filling.

        Empty means no session counts anywhere in it (its counters net to zero otherwise), so
        filling from here on gives the same rows as keeping it page by page.
        """
        cur.execute(f"CREATE TABLE IF NOT EXISTS {self.flag} (since DOUBLE PRECISION NOT NULL)")
        if cur.execute(f"SELECT 1 FROM {self.first_table} LIMIT 1").fetchone() is None:
            cur.execute(f"DELETE FROM {self.flag}")
            cur.execute(f"INSERT INTO {self.flag} (since) VALUES (?)", (time.time(),))
        # A filling view is settled by the next catch-up's last page, or at once by the
        # runner's setup if it has nothing left to read (runner.Runner.setup).
        self._due = self._due or cur.execute(
            f"SELECT 1 FROM {self.flag} LIMIT 1").fetchone() is not None

    def active(self, cur: ViewCursor) -> bool:
        """Whether the view is filling; a page that finds it so makes a settle due."""
        filling = self._known
        if filling is None:
            filling = cur.execute(f"SELECT 1 FROM {self.flag} LIMIT 1").fetchone() is not None
        self._due = self._due or filling
        return filling

    def settle(self, cur: ViewCursor) -> None:
        """Run the statements that turn staged facts into rows, once, if the view is filling."""
        if not self._due:
            return
        self._due = False
        if cur.execute(f"SELECT 1 FROM {self.flag} LIMIT 1").fetchone() is None:
            return
        if cur.postgres:  # let the grouping hash in memory, not sort on disk (this transaction)
            cur.execute(f"SET LOCAL work_mem = '{SETTLE_WORK_MEM}'")
        for sql in self.statements:
            cur.execute(sql)
        cur.execute(f"DELETE FROM {self.flag}")


def ensure_settled(cur: ViewCursor, *flags: str) -> None:
    """Refuse to answer from views still being filled from empty (a rebuild, a first start):
    their rows are staged, not yet grouped, so an answer would read zeros (503, not wrong
    numbers). `flags` are the views' flag tables (`Filling.flag`)."""
    for flag in flags:
        if cur.execute(f"SELECT 1 FROM {flag} LIMIT 1").fetchone() is not None:
            raise ViewsBehind(f"the {flag.removesuffix('_filling')} view is being filled from "
                              "empty (a rebuild or a first start); try again shortly")
