"""The view store's one face over SQLite and PostgreSQL: bulk upserts and value lists."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ledger import Settings
from ledger.deadlines import StoreDeadlines
from projections.store import COPY_ROWS, PROCESS_CONNECTIONS, ViewStore, connection_budget

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


def test_a_coroutine_reads_what_query_reads_with_or_without_its_pool(store: ViewStore) -> None:
    with store.transaction() as cur:
        cur.executemany(UPSERT, [(1, "一", 5), (2, "二", 7)])
    sql, params = "SELECT k, label, n FROM t WHERE n > ? ORDER BY k", (5,)

    async def read_both_ways() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        without_pool = await store.read(sql, params)  # a worker thread on PostgreSQL
        await store.open_reads()
        try:
            return without_pool, await store.read(sql, params)
        finally:
            await store.close_reads()

    without_pool, with_pool = asyncio.run(read_both_ways())
    assert without_pool == with_pool == store.query(sql, params) == [(2, "二", 7)]


def test_reads_from_a_coroutine_use_the_loop_s_pool_or_the_loop_itself(
        store: ViewStore) -> None:
    # PostgreSQL: psycopg's asynchronous pool, opened and closed by the loop. SQLite: nothing
    # to open, and the read runs on the loop's own thread.
    async def read() -> tuple[int, bool, set[int]]:
        await store.open_reads()
        pool = store._async_pool
        threads: set[int] = set()
        real = store.query

        def query(*args: Any) -> Any:
            threads.add(threading.get_ident())
            return real(*args)

        store.query = query  # type: ignore[method-assign]
        try:
            for _ in range(3):
                await store.read("SELECT 1")
            if pool is None:
                return 0, False, threads
            return pool.get_stats()["requests_num"], pool.closed, threads
        finally:
            del store.query
            await store.close_reads()
            assert (pool is None or pool.closed) and store._async_pool is None

    served, closed, threads = asyncio.run(read())
    if store.postgres:
        assert served >= 3 and not closed and threads == set()
    else:
        assert threads == {threading.get_ident()}  # asyncio.run's loop runs on this thread


@pytest.mark.stores("postgres")  # SQLite has no server to drop its connections
def test_reads_and_transactions_go_on_after_the_server_dropped_every_connection(
        store: ViewStore) -> None:
    """After a PostgreSQL restart every pooled connection is dead. A transaction's connection
    is checked as it leaves the pool; a read from a coroutine is asked again on another
    connection. Neither fails (each failure was a 500 before)."""
    with store.transaction() as cur:
        cur.executemany(UPSERT, [(1, "一", 5)])

    def drop_connections() -> int:
        import psycopg

        location = store.location
        with psycopg.connect(host=location.host, port=location.port, user=location.user,
                             password=location.password, dbname=location.dbname,
                             autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s", (f"vledger-views-{os.getpid()}",)).fetchone()
            return int(row[0]) if row else 0

    async def read_around_a_restart() -> list[list[tuple[Any, ...]]]:
        await store.open_reads()
        try:
            await asyncio.gather(*(store.read("SELECT n FROM t") for _ in range(8)))
            assert drop_connections() >= 2  # the loop's pool and the threads' pool
            return [await store.read("SELECT n FROM t") for _ in range(6)]
        finally:
            await store.close_reads()

    assert asyncio.run(read_around_a_restart()) == [[(5,)]] * 6
    drop_connections()
    for n in range(3):
        with store.transaction(lock="t") as cur:
            cur.executemany(UPSERT, [(1, "一", n)])
        assert store.query("SELECT n FROM t") == [(5 + n * (n + 1) // 2,)]


@pytest.mark.stores("postgres")
def test_the_connection_budget_says_when_workers_may_not_fit_the_server(
        store: ViewStore) -> None:
    assert connection_budget(store, 1) is None
    [(allowed,)] = store.query("SELECT current_setting('max_connections')::int")
    workers = int(allowed) // PROCESS_CONNECTIONS + 1
    warning = connection_budget(store, workers)
    assert warning is not None and f"{workers} worker(s)" in warning
    assert f"allows {allowed}" in warning


@pytest.mark.stores("postgres")
def test_view_connections_opened_for_a_burst_are_closed_once_idle(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb13 F4: after a burst a server kept every connection it had opened for 13 minutes and
    more, and the CLI and psql were refused "too many clients". Connections above the pool's
    minimum now close once idle for VIEW_IDLE_SECONDS (here shortened)."""
    monkeypatch.setattr("projections.store.VIEW_IDLE_SECONDS", 0.5)
    views = ViewStore(settings.store())
    try:
        started = threading.Barrier(6)

        def busy() -> None:
            with views.transaction() as cur:
                started.wait(10)  # six transactions at once: six connections
                cur.execute("SELECT 1")

        threads = [threading.Thread(target=busy) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        pool = views._pool  # the pool's own count is what is tested
        assert pool.get_stats()["pool_size"] >= 6
        deadline = time.monotonic() + 10
        while pool.get_stats()["pool_size"] > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.get_stats()["pool_size"] == 1
    finally:
        views.close()


@pytest.mark.stores("postgres")
def test_a_server_without_connections_to_spare_does_not_stop_a_start(
        store: ViewStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb15 F2: with the server's connections taken by others, a worker's start waited 10 s
    for its read pool, failed with a traceback, and took the whole server down. The pool now
    fills in the background; a read that finds no connection in time is a store error (the
    API's 503), and the start itself goes on."""
    import psycopg

    assert store.watchdog is not None
    monkeypatch.setattr(store.watchdog, "deadlines", StoreDeadlines(wait=0.5))
    refused = {**store._connect_kwargs(), "port": 1, "connect_timeout": 1}  # nothing listens
    monkeypatch.setattr(store, "_connect_kwargs", lambda: refused)

    async def start_then_read() -> float:
        began = time.monotonic()
        await store.open_reads()
        opened = time.monotonic() - began
        try:
            with pytest.raises(psycopg.OperationalError):
                await store.read("SELECT 1")
        finally:
            await store.close_reads()
        return opened

    assert asyncio.run(start_then_read()) < 0.5
