"""Reconciliation: rebuild every view into a scratch store from position 0, compare row by row.

The scratch store is a temporary SQLite file next to nothing else, or a temporary schema in
the same PostgreSQL database. A projection names its tables and their keys in a `tables`
attribute; for one that does not, its tables are found by creating them in the empty scratch
store, and whole rows are compared.
"""

from __future__ import annotations

import dataclasses
import fcntl
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from projections.runner import Projection, Runner
from projections.store import ViewCursor, ViewStore, table_names

# The audit log's leaves are compared by the event each stands for (its position) and its
# hash, not by leaf index: one event deleted from the middle shifts every later index, and a
# check by index listed every later leaf twice (bb38 F10). Its subtree hashes by block, one
# line each. The table: its key, the columns compared (all: none named).
COMPARED_BY = {"audit_leaves": (("position",), ("position", "leaf_hash")),
               "audit_nodes": (("level", "idx"), ())}


@dataclass(frozen=True)
class Difference:
    """One row that the live view and the rebuilt view disagree on (None: row missing)."""

    view: str
    table: str
    key: tuple[Any, ...]
    live: tuple[Any, ...] | None
    rebuilt: tuple[Any, ...] | None


SCRATCH_PREFIX = "vledger_check_"  # PostgreSQL schemas; SQLite folders "vledger-check-…"
_LOCK_FILE = "in-use.lock"


@contextmanager
def scratch_store(live: ViewStore) -> Iterator[ViewStore]:
    """An empty view store of the live store's kind, removed afterwards.

    Each scratch store is held (a lock on a file in its folder, a PostgreSQL advisory lock
    on its schema's name) while in use; a check killed before it could remove its own
    (SIGKILL: 80 MB left behind, bb26 F2) has it removed by the next check, which finds it
    no longer held."""
    if not live.postgres:
        _remove_stale_folders()
        with tempfile.TemporaryDirectory(prefix="vledger-check-") as folder, \
                open(Path(folder) / _LOCK_FILE, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            store = ViewStore(dataclasses.replace(
                live.location, sqlite_path=Path(folder) / "views.db"))
            try:
                yield store
            finally:
                store.close()
        return
    schema = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    holder = live.connect()  # holds the schema's advisory lock for as long as it is in use
    try:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (schema,))
        _remove_stale_schemas(live, holder)
        with live.transaction() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')
        store = ViewStore(dataclasses.replace(live.location, schema=schema))
        try:
            yield store
        finally:
            store.close()
            with live.transaction() as cur:
                cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        holder.close()


def _remove_stale_folders() -> None:
    for folder in Path(tempfile.gettempdir()).glob("vledger-check-*"):
        try:
            with open(folder / _LOCK_FILE, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a check in progress
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _remove_stale_schemas(live: ViewStore, holder: Any) -> None:
    """Drop the scratch schemas whose advisory lock nobody holds (their check has gone)."""
    stale = [name for (name,) in holder.execute(
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
        (SCRATCH_PREFIX,)).fetchall()]
    for name in stale:
        if holder.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,)).fetchone()[0]:
            try:
                with live.transaction() as cur:
                    cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            finally:
                holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))


def tables_of(store: ViewStore, projection: Projection) -> dict[str, tuple[str, ...]]:
    """The projection's tables and key columns (empty key: compare whole rows)."""
    declared: dict[str, tuple[str, ...]] | None = getattr(projection, "tables", None)
    if declared is not None:
        return declared
    with store.transaction() as cur:
        before = table_names(cur)
        projection.create(cur)
        return dict.fromkeys(sorted(table_names(cur) - before), ())


@dataclass
class Reconciliation:
    """What a check found: the differences listed (the first `listed` of each view, all
    without a limit) and how many each view has in all."""

    differences: list[Difference] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, found: Iterable[Difference], listed: int | None) -> None:
        for d in found:
            self.counts[d.view] += 1
            if listed is None or self.counts[d.view] <= listed:
                self.differences.append(d)


def reconcile(live: ViewStore, recorder: ApplicationRecorder,
              make: Callable[[], Sequence[Projection]]) -> list[Difference]:
    """Rebuild fresh projections into a scratch store and list where the live views differ."""
    return compare_views(live, recorder, make).differences


def compare_views(live: ViewStore, recorder: ApplicationRecorder,
                  make: Callable[[], Sequence[Projection]],
                  listed: int | None = None) -> Reconciliation:
    """Rebuild fresh projections into a scratch store and compare them with the live views,
    keeping the first `listed` differences of each view (a view rebuilt from a store with one
    event deleted differs in thousands of rows) and counting them all."""
    found = Reconciliation()
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
                        found.add([Difference(p.name, "projection_positions", (p.name,),
                                              (live_positions.get(p.name),), (target,))],
                                  listed)
                        continue
                    for table, key in tables[p.name].items():
                        key, columns = COMPARED_BY.get(table, (key, ()))
                        found.add(_compare(p.name, table, key, cur, other, columns), listed)
    return found


# Rows compared at a time: a check holds two batches per table, not the tables (bb23: it held
# both copies of every table, about 1.3 KB an event, 657 MB at 444k events).
BATCH = 5000
_TEXT_TYPES = {19, 25, 1042, 1043}  # PostgreSQL's name, text, char and varchar
_BYTE_ORDER = ' COLLATE "C"'


def _ordered(cur: ViewCursor, table: str, key: tuple[str, ...], columns: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """A table's rows (of `columns`, every one by default) ordered by `key` (whole rows
    without one), read BATCH at a time (a server-side cursor on PostgreSQL), each with the
    key Python compares it by.

    The store orders them and the merge in `_compare` compares them in Python, so the two
    must agree: text in byte order (`COLLATE "C"` on PostgreSQL; SQLite's own), NULL first."""
    conn = cur.raw.connection
    probe = conn.cursor()
    selected = ", ".join(columns) or "*"
    probe.execute(f"SELECT {selected} FROM {table} LIMIT 0")
    names = [d[0] for d in probe.description]
    texts = {d[0] for d in probe.description
             if cur.postgres and getattr(d, "type_code", None) in _TEXT_TYPES}
    probe.close()
    columns = key or tuple(names)
    at = [names.index(c) for c in columns]
    order = ", ".join(f"{c}{_BYTE_ORDER if c in texts else ''} NULLS FIRST" for c in columns)
    reader = conn.cursor(name=f"check_{uuid.uuid4().hex[:12]}") if cur.postgres \
        else conn.cursor()
    try:
        reader.execute(f"SELECT {selected} FROM {table} ORDER BY {order}")
        while batch := reader.fetchmany(BATCH):
            for raw in batch:
                row = tuple(raw)
                # NULL first, as the store puts it; never compared itself
                yield tuple((row[i] is not None, row[i]) for i in at), row
    finally:
        reader.close()


def _compare(view: str, table: str, key: tuple[str, ...], live: ViewCursor,
             rebuilt: ViewCursor, columns: tuple[str, ...] = ()) -> Iterator[Difference]:
    """Merge the two copies of a table in key order, streaming; a table without a key is
    compared as a multiset of whole rows."""
    def named(found: tuple[tuple[Any, ...], tuple[Any, ...]]) -> tuple[Any, ...]:
        """How a difference names its row: by its key, or by its first column without one."""
        sort_key, row = found
        return tuple(v for _, v in sort_key) if key else row[:1]

    old_rows = _ordered(live, table, key, columns)
    new_rows = _ordered(rebuilt, table, key, columns)
    old, new = next(old_rows, None), next(new_rows, None)
    while old is not None or new is not None:
        if new is None or (old is not None and old[0] < new[0]):
            assert old is not None
            yield Difference(view, table, named(old), old[1], None)
            old = next(old_rows, None)
        elif old is None or new[0] < old[0]:
            yield Difference(view, table, named(new), None, new[1])
            new = next(new_rows, None)
        else:
            if old[1] != new[1]:
                yield Difference(view, table, named(old), old[1], new[1])
            old, new = next(old_rows, None), next(new_rows, None)
