"""Pages of a view's rows cut by key, as the list routes read them (directory, activities,
awards): one snapshot for the position and the rows, the filters, the key after the last row
served (`api/schemas.keyed`), in key order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from projections.filling import ensure_settled
from projections.store import ViewCursor


def read_snapshot(cur: ViewCursor, views: Sequence[str], filling: Sequence[str] = ()) -> int:
    """Start the read's snapshot (every statement after sees the same views: on PostgreSQL
    read committed would give each its own) and answer the position the `views` have all
    read to; 503 while one of `filling` is being filled from empty (it would answer zeros)."""
    if cur.postgres:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    if filling:
        ensure_settled(cur, *filling)
    row = cur.execute("SELECT MIN(position) FROM projection_positions WHERE name IN ("
                      + ", ".join("?" * len(views)) + ")", list(views)).fetchone()
    return int(row[0] or 0) if row is not None else 0


def equal_to(filters: Sequence[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    """The conditions (and their parameters) of the filters given: column = value."""
    given = [(column, value) for column, value in filters if value is not None]
    return [f"{column} = ?" for column, _ in given], [value for _, value in given]


def page_rows(cur: ViewCursor, select: str, where: Sequence[str], params: Sequence[Any],
              key: Sequence[str], after: Sequence[Any] | None, count: int) -> list[Any]:
    """At most `count` rows of `select` meeting every condition of `where`, whose `key`
    columns come after `after` (None: from the first), in key order."""
    where, params = list(where), list(params)
    if after is not None:
        where.append(f"({', '.join(key)}) > ({', '.join('?' * len(after))})")
        params += list(after)
    return cur.execute(select + (f" WHERE {' AND '.join(where)}" if where else "")
                       + f" ORDER BY {', '.join(key)} LIMIT ?", [*params, count]).fetchall()
