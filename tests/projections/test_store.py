"""The view store's one face over SQLite and PostgreSQL: bulk upserts and value lists."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger import Settings
from projections.store import COPY_ROWS, ViewStore

UPSERT = ("INSERT INTO t (k, label, n) VALUES (?, ?, ?) "
          "ON CONFLICT (k) DO UPDATE SET n = t.n + excluded.n")


@pytest.fixture
def store(settings: Settings) -> Iterator[ViewStore]:
    views = ViewStore(settings.store())
    with views.transaction() as cur:
        cur.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, label TEXT, n BIGINT NOT NULL)")
    yield views
    views.close()


def _rows(store: ViewStore) -> dict[int, tuple[str, int]]:
    return {int(k): (label, int(n)) for k, label, n in store.query("SELECT k, label, n FROM t")}


@pytest.mark.parametrize("count", [3, COPY_ROWS, COPY_ROWS + 1])
def test_many_rows_are_inserted_then_added_to_as_upserts(store: ViewStore, count: int) -> None:
    # At COPY_ROWS rows and more, PostgreSQL takes them through a COPY staging table.
    rows = [(i, f"名字 {i} 'quoted' \\ tab\t", i) for i in range(count)]
    with store.transaction() as cur:
        cur.executemany(UPSERT, rows)
        cur.executemany(UPSERT, [(i, "ignored", 1) for i in range(count)])  # same transaction
    with store.transaction() as cur:
        cur.executemany(UPSERT, [(i, "ignored", 10) for i in range(count)])

    assert _rows(store) == {i: (f"名字 {i} 'quoted' \\ tab\t", i + 11) for i in range(count)}


@pytest.mark.parametrize("count", [3, COPY_ROWS + 1])
def test_many_rows_are_appended_and_a_rollback_takes_them_back(store: ViewStore,
                                                               count: int) -> None:
    # A plain INSERT of COPY_ROWS rows and more is copied straight into the table.
    rows = [(i, f"名字 {i} 'quoted' \\ tab\t", i) for i in range(count)]
    with pytest.raises(RuntimeError), store.transaction() as cur:
        cur.executemany("INSERT INTO t (k, label, n) VALUES (?, ?, ?)", rows)
        raise RuntimeError("crash before the position is written")
    with store.transaction() as cur:
        cur.executemany("INSERT INTO t (k, label, n) VALUES (?, ?, ?)", rows)
    assert _rows(store) == {k: (label, n) for k, label, n in rows}


def test_a_failed_bulk_transaction_leaves_nothing_behind(store: ViewStore) -> None:
    rows = [(i, None, 1) for i in range(COPY_ROWS)]
    with pytest.raises(RuntimeError), store.transaction() as cur:
        cur.executemany(UPSERT, rows)
        raise RuntimeError("crash between the view write and the position")
    with store.transaction() as cur:
        cur.executemany(UPSERT, rows)
    assert _rows(store) == {i: (None, 1) for i in range(COPY_ROWS)}


def test_one_of_matches_any_number_of_values(store: ViewStore) -> None:
    with store.transaction() as cur:
        cur.executemany(UPSERT, [(i, str(i), i) for i in range(50)])
        for wanted in ([], [7], list(range(0, 50, 3)), list(range(40, 10_000))):
            condition, values = cur.one_of("k", wanted)
            found = cur.execute(f"SELECT k FROM t WHERE {condition} ORDER BY k",
                                (values,)).fetchall()
            assert [int(k) for (k,) in found] == [k for k in wanted if k < 50]
