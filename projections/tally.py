"""In-memory folds of one page, written back with a few `executemany` statements.

`Tally` keeps additive counters (minutes, sessions): a page adds and subtracts in memory, then
one upsert adds the net change to each row, and rows that a subtraction may have emptied are
deleted, so a view holds the same rows whatever the page boundaries were. `Latest` keeps the
last value of descriptive columns (names, kinds, parents).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections.filling import Filling
from projections.store import ViewCursor

Key = tuple[Any, ...]


class Tally:
    """Net changes to additive counters of one table, keyed by its primary key."""

    def __init__(self, table: str, keys: Sequence[str], counters: Sequence[str]) -> None:
        self.table = table
        self.keys = tuple(keys)
        self.counters = tuple(counters)
        self.changes: dict[Key, list[int]] = {}
        self.lowered: set[Key] = set()

    def add(self, key: Key, *amounts: int) -> None:
        """Add amounts (one per counter, negative to subtract) to the row at `key`."""
        row = self.changes.get(key)
        if row is None:
            self.changes[key] = list(amounts)
        else:
            for i, amount in enumerate(amounts):
                row[i] += amount
        if min(amounts) < 0:
            self.lowered.add(key)

    def pending(self, key: Key) -> list[int]:
        """The change not yet written for one key (zeros when none)."""
        return self.changes.get(key, [0] * len(self.counters))

    def write(self, cur: ViewCursor) -> None:
        """Upsert the net changes, then drop rows left empty by a subtraction."""
        cols = (*self.keys, *self.counters)
        marks = ", ".join("?" for _ in cols)
        sets = ", ".join(f"{c} = {self.table}.{c} + excluded.{c}" for c in self.counters)
        cur.executemany(
            f"INSERT INTO {self.table} ({', '.join(cols)}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(self.keys)}) DO UPDATE SET {sets}",
            [(*k, *v) for k, v in self.changes.items() if any(v)],
        )
        where = " AND ".join([*(f"{k} = ?" for k in self.keys),
                              *(f"{c} = 0" for c in self.counters)])
        cur.executemany(f"DELETE FROM {self.table} WHERE {where}", sorted(self.lowered))
        self.changes.clear()
        self.lowered.clear()


class Latest:
    """The last value of some columns of one table, per key; whole rows for new keys."""

    def __init__(self, table: str, key: str, columns: Sequence[str]) -> None:
        self.table = table
        self.key = key
        self.columns = tuple(columns)
        self.created: dict[Any, dict[str, Any]] = {}
        self.updated: dict[Any, dict[str, Any]] = {}

    def create(self, key: Any, **values: Any) -> None:
        """A new row (a later `create` for the same key replaces it)."""
        self.created[key] = {c: values.get(c) for c in self.columns}
        self.updated.pop(key, None)

    def update(self, key: Any, **values: Any) -> None:
        """Change some columns of a row created now or earlier."""
        if key in self.created:
            self.created[key].update(values)
        else:
            self.updated.setdefault(key, {}).update(values)

    def get(self, key: Any, column: str) -> Any:
        """A value changed in this page, or None."""
        row = self.created.get(key) or self.updated.get(key) or {}
        return row.get(column)

    def write(self, cur: ViewCursor) -> None:
        """Upsert new rows, then update changed columns of older ones."""
        cols = (self.key, *self.columns)
        sets = ", ".join(f"{c} = excluded.{c}" for c in self.columns)
        cur.executemany(
            f"INSERT INTO {self.table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
            f"ON CONFLICT ({self.key}) DO UPDATE SET {sets}",
            [(k, *(row[c] for c in self.columns)) for k, row in self.created.items()],
        )
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for k, row in self.updated.items():
            names = tuple(sorted(row))
            by_columns.setdefault(names, []).append((*(row[c] for c in names), k))
        for names, rows in by_columns.items():
            sets = ", ".join(f"{c} = ?" for c in names)
            cur.executemany(f"UPDATE {self.table} SET {sets} WHERE {self.key} = ?", rows)
        self.created.clear()
        self.updated.clear()


def without_rowid(ddl: str, postgres: bool) -> str:
    """On SQLite, store a table with a composite key as one B-tree (upserts touch one tree)."""
    if postgres or not ddl.startswith("CREATE TABLE") or "PRIMARY KEY (" not in ddl:
        return ddl
    return ddl + " WITHOUT ROWID"


class TableViews:
    """create(), drop() and settle() for a projection that declares its `ddl` and its `tables`
    (and, if it fills from empty in bulk, its `filling`: projections/filling.py)."""

    ddl: tuple[str, ...] = ()
    tables: dict[str, tuple[str, ...]] = {}  # noqa: RUF012 - read only, set per subclass
    filling: Filling | None = None

    def create(self, cur: ViewCursor) -> None:
        """Create the tables and indexes."""
        for sql in self.ddl:
            cur.execute(without_rowid(sql, cur.postgres))
        if self.filling is not None:
            self.filling.create(cur)

    def settle(self, cur: ViewCursor) -> None:
        """At the end of a catch-up: settle a fill from empty, if one is due."""
        if self.filling is not None:
            self.filling.settle(cur)

    def drop(self, cur: ViewCursor) -> None:
        """Drop the tables."""
        for table in self.tables:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
