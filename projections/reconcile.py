"""Reconciliation: rebuild every view into a scratch store from position 0, compare row by row.

The scratch store is a temporary SQLite file next to nothing else, or a temporary schema in
the same PostgreSQL database. A projection names its tables and their keys in a `tables`
attribute; for one that does not, its tables are found by creating them in the empty scratch
store, and whole rows are compared.
"""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from projections.runner import Projection, Runner
from projections.store import ViewCursor, ViewStore, table_names


@dataclass(frozen=True)
class Difference:
    """One row that the live view and the rebuilt view disagree on (None: row missing)."""

    view: str
    table: str
    key: tuple[Any, ...]
    live: tuple[Any, ...] | None
    rebuilt: tuple[Any, ...] | None


@contextmanager
def scratch_store(live: ViewStore) -> Iterator[ViewStore]:
    """An empty view store of the live store's kind, removed afterwards."""
    if not live.postgres:
        with tempfile.TemporaryDirectory(prefix="vledger-check-") as folder:
            store = ViewStore(dataclasses.replace(
                live.location, sqlite_path=Path(folder) / "views.db"))
            try:
                yield store
            finally:
                store.close()
        return
    schema = f"vledger_check_{uuid.uuid4().hex[:12]}"
    with live.transaction() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    store = ViewStore(dataclasses.replace(live.location, schema=schema))
    try:
        yield store
    finally:
        store.close()
        with live.transaction() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')


def tables_of(store: ViewStore, projection: Projection) -> dict[str, tuple[str, ...]]:
    """The projection's tables and key columns (empty key: compare whole rows)."""
    declared: dict[str, tuple[str, ...]] | None = getattr(projection, "tables", None)
    if declared is not None:
        return declared
    with store.transaction() as cur:
        before = table_names(cur)
        projection.create(cur)
        return dict.fromkeys(sorted(table_names(cur) - before), ())


def reconcile(live: ViewStore, recorder: ApplicationRecorder,
              make: Callable[[], Sequence[Projection]]) -> list[Difference]:
    """Rebuild fresh projections into a scratch store and list where the live views differ."""
    differences: list[Difference] = []
    with scratch_store(live) as scratch:
        fresh = list(make())
        tables = {p.name: tables_of(scratch, p) for p in fresh}
        runner = Runner(recorder, scratch, fresh)
        with live.reading() as cur:
            if cur.postgres:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            live_positions = dict(cur.execute(
                "SELECT name, position FROM projection_positions").fetchall())
            target = max((int(live_positions.get(p.name, 0)) for p in fresh), default=0)
            runner.catch_up(until=target)  # from position 0: bulk work (Runner.catch_up)
            with scratch.reading() as other:
                for p in fresh:
                    if int(live_positions.get(p.name, 0)) != target:
                        differences.append(Difference(
                            p.name, "projection_positions", (p.name,),
                            (live_positions.get(p.name),), (target,)))
                        continue
                    for table, key in tables[p.name].items():
                        differences.extend(_compare(p.name, table, key, cur, other))
    return differences


def _rows(cur: ViewCursor, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    rows = cur.execute(f"SELECT * FROM {table}").fetchall()
    names = [d[0] for d in cur.raw.description]
    return names, rows


def _compare(view: str, table: str, key: tuple[str, ...], live: ViewCursor,
             rebuilt: ViewCursor) -> list[Difference]:
    names, live_rows = _rows(live, table)
    _, new_rows = _rows(rebuilt, table)
    if not key:
        extra, missing = Counter(live_rows), Counter(new_rows)
        extra.subtract(Counter(new_rows))
        missing.subtract(Counter(live_rows))
        return ([Difference(view, table, r[:1], r, None) for r, n in extra.items() if n > 0]
                + [Difference(view, table, r[:1], None, r) for r, n in missing.items() if n > 0])
    at = [names.index(k) for k in key]
    old = {tuple(r[i] for i in at): r for r in live_rows}
    new = {tuple(r[i] for i in at): r for r in new_rows}
    return [Difference(view, table, k, old.get(k), new.get(k))
            for k in sorted(old.keys() | new.keys(), key=repr) if old.get(k) != new.get(k)]
