"""The SQLite application recorder, checking a write's guard inside its insert.

Our writers take the write turn (ledger/turns.py) before they insert, so a guard checked in the
inserting transaction sees every write committed before it and none can commit between the
check and this insert (ledger/guards.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from ledger.guards import check_tail, check_unchanged, current_guard


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    """`SQLiteApplicationRecorder` that checks the current write guard before inserting."""

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        guard = current_guard()
        if guard is not None:
            if guard.unchanged:
                check_unchanged(guard, c, self.events_table_name)
            check_tail(guard, c, self.events_table_name, postgres=False)
        return super()._insert_events(c, stored_events, **kwargs)
