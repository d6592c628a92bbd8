"""The runner: per-view positions, exactly-once pages, and a worker killed mid-rebuild."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import ClassVar

import pytest

from ledger import Ledger
from ledger.collector import FULL_COLLECTION_EVERY
from ledger.errors import StoreAltered
from projections import ReadModels
from projections.credits import CreditsProjection
from projections.feed import FeedEvent
from projections.hours import HoursProjection
from projections.runner import LOCK_NAME, PageReader, Runner, Wakeup
from projections.store import ViewCursor, ViewStore
from tests.factories import (
    ADMIN,
    at,
    make_long_activity,
    make_unit,
    make_volunteer,
    serve,
    session_record,
)

ROOT = Path(__file__).resolve().parents[2]


def test_two_projections_in_one_store_advance_independently(ledger: Ledger) -> None:
    volunteer = make_volunteer(ledger)
    serve(ledger, volunteer, make_long_activity(ledger, make_unit(ledger)), date(2017, 3, 3))
    store = ViewStore(ledger.settings.store())
    try:
        hours_only = Runner(ledger.recorder, store, [HoursProjection()])
        hours_only.catch_up()
        both = Runner(ledger.recorder, store, [HoursProjection(), CreditsProjection()])
        assert both.positions() == {"hours": ledger.head(), "credits": 0}

        both.catch_up(until=ledger.head() - 3)
        assert both.positions() == {"hours": ledger.head(), "credits": ledger.head() - 3}
        both.catch_up()
        both.rebuild(["credits"], progress=None)
        assert both.positions() == {"hours": ledger.head(), "credits": ledger.head()}
    finally:
        store.close()


def test_catching_up_again_counts_nothing_twice(ledger: Ledger, models: ReadModels) -> None:
    volunteer = make_volunteer(ledger)
    serve(ledger, volunteer, make_long_activity(ledger, make_unit(ledger)), date(2017, 3, 3))
    models.catch_up()
    models.catch_up()
    second = ReadModels(ledger)
    try:
        second.catch_up()
        hours = second.volunteer_hours(volunteer)
        assert hours is not None and hours["total_minutes"] == 60
    finally:
        second.close()


def test_wait_for_reaches_a_write_made_after_the_views_were_built(
        ledger: Ledger, models: ReadModels) -> None:
    models.catch_up()
    volunteer = make_volunteer(ledger)
    position = serve(ledger, volunteer, make_long_activity(ledger, make_unit(ledger)),
                     date(2017, 3, 3)).position

    assert models.wait_for(position, timeout=2.0) is True
    assert models.position() >= position
    assert models.volunteer_hours(volunteer) is not None


def _fill(ledger: Ledger, volunteers: int, days: int) -> tuple[list[str], str]:
    unit = make_unit(ledger, "community")
    activity = make_long_activity(ledger, unit)
    people = [make_volunteer(ledger, unit) for _ in range(volunteers)]
    for person in people:
        records = [session_record(person, activity, at(9, day=date(2017, 1, 1) + timedelta(d)),
                                  at(10, day=date(2017, 1, 1) + timedelta(d)))
                   for d in range(days)]
        ledger.record_sessions(ADMIN, records)
    return people, unit


def _hours_position(store: ViewStore) -> int:
    with store.reading() as cur:
        row = cur.execute("SELECT position FROM projection_positions WHERE name = 'hours'"
                          ).fetchone()
    return int(row[0]) if row else 0


def test_a_worker_killed_mid_rebuild_resumes_with_exact_totals(ledger: Ledger,
                                                               models: ReadModels) -> None:
    people, unit = _fill(ledger, volunteers=20, days=60)
    models.catch_up()
    head = ledger.head()
    env = {**os.environ, "VLEDGER_DATABASE_URL": ledger.settings.database_url}
    worker = subprocess.Popen(
        [sys.executable, "-c", "from projections.cli import app; app()",
         "rebuild", "--page-size", "7"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not 0 < _hours_position(models.store) < head // 2:
            assert worker.poll() is None, "the worker finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait()
    assert 0 < _hours_position(models.store) < head

    models.catch_up()

    assert models.position() == head
    for person in people:
        hours = models.volunteer_hours(person)
        assert hours is not None and hours["total_minutes"] == 60 * 60
        assert hours["sessions"] == 60
    [ranked] = models.unit_rankings("community", year=2017)
    assert (ranked["unit_id"], ranked["total_minutes"]) == (unit, 20 * 60 * 60)
    assert ranked["volunteers"] == 20


def test_a_rebuild_leaves_postgres_statistics_of_the_tables_it_filled(
        ledger: Ledger, models: ReadModels) -> None:
    # Without statistics the planner guesses `= ANY(…)` matches much of a table and scans it;
    # a rebuild fills tables faster than autovacuum visits them (and this machine runs none).
    # SQLite plans by its indexes without statistics, and its plans are left as measured.
    volunteer = make_volunteer(ledger)
    serve(ledger, volunteer, make_long_activity(ledger, make_unit(ledger)), date(2017, 3, 3))
    models.runner.rebuild()
    with models.store.reading() as cur:
        if models.store.postgres:
            never = cur.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables s "
                "ON s.relid = c.oid WHERE s.schemaname = current_schema() "
                "AND s.last_analyze IS NULL AND s.last_autoanalyze IS NULL").fetchall()
            assert never == []
        else:
            assert cur.execute("SELECT name FROM sqlite_master "
                               "WHERE name = 'sqlite_stat1'").fetchall() == []


def _following(models: ReadModels, interval: float) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    worker = threading.Thread(target=models.runner.follow, args=(stop, interval), daemon=True)
    worker.start()
    return worker, stop


def _seconds_until_caught_up(models: ReadModels, position: int, limit: float) -> float:
    began = time.monotonic()
    while models.runner.position() < position:
        assert time.monotonic() - began < limit, f"the views did not reach {position}"
        time.sleep(0.01)
    return time.monotonic() - began


def test_a_follower_sees_another_process_write_at_once_on_postgres_else_at_its_next_poll(
        ledger: Ledger, models: ReadModels) -> None:
    # `vledger projections run`: another Ledger (as another process) writes; the follower
    # was told to poll only every 30 s on PostgreSQL, so it must have been woken by the
    # commit's NOTIFY; on SQLite it polls every 0.2 s.
    postgres = models.store.postgres
    volunteer = make_volunteer(ledger)
    worker, stop = _following(models, 30.0 if postgres else 0.2)
    writer = Ledger(ledger.settings)
    try:
        _seconds_until_caught_up(models, ledger.head(), 10)  # listening since before that
        activity = make_long_activity(writer, make_unit(writer))
        written = serve(writer, volunteer, activity, date(2017, 3, 3)).position
        took = _seconds_until_caught_up(models, written, 10)
        assert took < (5.0 if postgres else 2.0)
        assert models.volunteer_hours(volunteer)["total_minutes"] > 0
    finally:
        stop.set()
        stopping = time.monotonic()
        worker.join(timeout=35)
        writer.close()
    assert not worker.is_alive()
    assert time.monotonic() - stopping < 2  # not at the end of its 30 s wait


def test_a_wakeup_that_loses_its_connection_polls_then_listens_again(
        ledger: Ledger, models: ReadModels) -> None:
    stop = threading.Event()
    with Wakeup(ledger.recorder, models.store, stop) as wakeup:
        if not models.store.postgres:
            began = time.monotonic()
            wakeup.wait(0.1)  # SQLite: a plain poll
            assert not wakeup.listening and time.monotonic() - began >= 0.1
            return
        assert wakeup.listening
        listener = wakeup._conn.info.backend_pid
        with models.store.transaction() as cur:  # the server drops the listening session
            cur.execute("SELECT pg_terminate_backend(?)", (listener,))
        wakeup.wait(0.1)  # fails, says so, and polls
        assert not wakeup.listening
        wakeup.wait(0.1)  # listens again
        assert wakeup.listening
        writer = Ledger(ledger.settings)
        try:
            make_unit(writer)
            began = time.monotonic()
            wakeup.wait(10)
            assert time.monotonic() - began < 5  # woken by the commit, not the timeout
        finally:
            writer.close()
    assert not wakeup.listening


def test_a_burst_of_commits_wakes_a_follower_once_per_gap(ledger: Ledger,
                                                          models: ReadModels) -> None:
    stop = threading.Event()
    timeout = 5 if models.store.postgres else 0.4  # SQLite only polls: no need to wait long
    with Wakeup(ledger.recorder, models.store, stop, gap=0.3) as wakeup:
        writer = Ledger(ledger.settings)
        try:
            make_unit(writer)
            began = time.monotonic()
            wakeup.wait(timeout)  # PostgreSQL: woken by the commit
            first = time.monotonic() - began
            make_unit(writer)
            make_unit(writer)
            began = time.monotonic()
            wakeup.wait(timeout)
            second = time.monotonic() - began
        finally:
            writer.close()
    if models.store.postgres:
        assert first < 2
        assert 0.2 < second < 2  # both commits at once, after the gap
    else:
        assert first >= timeout and second >= timeout


def test_a_follower_given_failed_reports_a_failing_catch_up_and_keeps_following(
        ledger: Ledger, models: ReadModels) -> None:
    # The API's follower: a store that fails for a moment must not end it.
    stop, errors, calls = threading.Event(), list[Exception](), [0]
    real = models.runner.catch_up

    def flaky() -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("the store went away")
        if calls[0] >= 3:
            stop.set()
        return real()

    models.runner.catch_up = flaky  # type: ignore[method-assign]
    models.runner.follow(stop, 0.01, failed=errors.append)
    assert [str(e) for e in errors] == ["the store went away"] and calls[0] == 3
    stop.clear()
    calls[0] = 0
    try:
        models.runner.follow(stop, 0.01)  # without `failed`, the worker ends with the error
    except RuntimeError as error:
        assert str(error) == "the store went away"
    else:
        raise AssertionError("the failure was swallowed")


class _Thresholds:
    """A view that notes the collector's oldest-generation threshold at each page it folds."""

    name, schema_version = "thresholds", 1

    def __init__(self) -> None:
        self.seen: list[int] = []

    def create(self, cur: ViewCursor) -> None: ...

    def drop(self, cur: ViewCursor) -> None: ...

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        self.seen.append(gc.get_threshold()[2])


def test_a_catch_up_far_behind_folds_with_rare_full_collections_and_a_short_one_does_not(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch,
        default_gc_thresholds: None) -> None:
    people, unit = _fill(ledger, volunteers=3, days=5)
    monkeypatch.setattr("projections.runner.BULK_EVENTS", 20)
    watch = _Thresholds()
    runner = Runner(ledger.recorder, models.store, [watch])
    assert ledger.head() >= 20
    runner.catch_up()  # a first start: every event is behind
    assert watch.seen and set(watch.seen) == {FULL_COLLECTION_EVERY}
    assert gc.get_threshold() == (700, 10, 10)

    watch.seen.clear()
    activity = make_long_activity(ledger, unit)
    serve(ledger, people[0], activity, date(2017, 9, 1))
    runner.catch_up()  # a few events after a write
    assert watch.seen and set(watch.seen) == {10}

    watch.seen.clear()
    runner.rebuild()
    assert watch.seen and set(watch.seen) == {FULL_COLLECTION_EVERY}
    assert gc.get_threshold() == (700, 10, 10)


def test_writers_waiting_for_one_batch_ask_the_store_once_between_them(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch) -> None:
    people, unit = _fill(ledger, volunteers=2, days=3)
    models.catch_up()
    serve(ledger, people[0], make_long_activity(ledger, unit), date(2017, 9, 1))
    written = ledger.head()
    runner = models.runner
    asked: list[str] = []
    for name in ("positions", "head"):
        real = getattr(runner, name)
        monkeypatch.setattr(runner, name, lambda real=real, name=name: (
            asked.append(name), real())[1])
    start = threading.Barrier(20)
    reached: list[bool] = []

    def writer() -> None:
        start.wait(5)
        reached.append(runner.wait_for(written, 5))

    threads = [threading.Thread(target=writer) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert reached == [True] * 20
    assert sorted(asked) == ["head", "positions"]  # the first to hold the lock, for all
    assert models.position() == written


def test_a_page_reader_reading_ahead_gives_the_pages_a_plain_read_gives(ledger: Ledger) -> None:
    _fill(ledger, volunteers=3, days=4)
    head = ledger.head()
    plain, ahead = PageReader(ledger.recorder, ahead=False), PageReader(ledger.recorder, ahead=True)
    try:
        for until in (None, head - 5):
            start, pages = 1, 0
            while True:
                want = plain.read(start, 7, until)
                got = ahead.read(start, 7, until)
                assert [(e.position, e.state) for e in got] == [(e.position, e.state) for e in want]
                if len(want) < 7:
                    break
                start, pages = want[-1].position + 1, pages + 1
            assert pages > 2
            assert (want[-1].position if want else start - 1) == (until or head)
        # A read that is not the page read ahead (another start) reads afresh.
        assert [e.position for e in ahead.read(1, 3, None)] == [1, 2, 3]
        assert [e.position for e in ahead.read(2, 3, None)] == [2, 3, 4]
    finally:
        plain.close()
        ahead.close()


def test_a_catch_up_far_behind_reads_ahead_on_postgres_only(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch) -> None:
    people, _ = _fill(ledger, volunteers=3, days=5)
    models.catch_up()
    before = {p: models.volunteer_hours(p) for p in people}
    monkeypatch.setattr("projections.runner.BULK_EVENTS", 20)
    threads: list[str] = []
    real = PageReader._fetch

    def fetch(self: PageReader, start: int, size: int, until: int | None) -> list[FeedEvent]:
        threads.append(threading.current_thread().name)
        return real(self, start, size, until)

    monkeypatch.setattr(PageReader, "_fetch", fetch)
    models.runner.rebuild_page_size = 5
    models.runner.rebuild()
    ahead = [t for t in threads if t.startswith("vledger-pages")]
    assert len(threads) > 5
    if models.store.postgres:
        assert len(ahead) == len(threads) - 1  # all but the first page
    else:
        assert not ahead
    assert models.runner.position() == ledger.head()
    assert {p: models.volunteer_hours(p) for p in people} == before


def _start_again_and_hold(models: ReadModels, store: ViewStore, held: threading.Event,
                          release: threading.Event) -> None:
    """What another process's rebuild does first (views dropped, positions 0, committed), then
    a stall while it holds the views' lock."""
    with store.transaction(lock=LOCK_NAME) as cur:
        for projection in models.runner.projections:
            projection.drop(cur)
            projection.create(cur)
            cur.execute("UPDATE projection_positions SET position = 0 WHERE name = ?",
                        (projection.name,))
    with store.transaction(lock=LOCK_NAME):
        held.set()
        release.wait(30)


def test_a_reader_is_not_answered_from_views_another_process_started_again(
        ledger: Ledger, models: ReadModels) -> None:
    people, _ = _fill(ledger, volunteers=2, days=3)
    models.catch_up()
    head, before = ledger.head(), {p: models.volunteer_hours(p) for p in people}
    assert models.wait_for(head, 1.0, verify=True)
    other = ViewStore(ledger.settings.store(), gate=ledger.writing)
    held, release = threading.Event(), threading.Event()
    rebuild = threading.Thread(target=_start_again_and_hold,
                               args=(models, other, held, release))
    rebuild.start()
    try:
        assert held.wait(10)
        began = time.monotonic()
        # A reader asks the store, and waits no longer than asked while the views are held.
        assert not models.wait_for(head, 0.5, verify=True)
        # So does a writer, although it trusts what this process knows.
        assert not models.wait_for(head, 0.3)
        assert time.monotonic() - began < 3
    finally:
        release.set()
        rebuild.join()
        other.close()
    assert models.wait_for(head, 10, verify=True)
    assert {p: models.volunteer_hours(p) for p in people} == before


def test_a_start_that_waits_for_views_another_process_holds_says_why(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("projections.runner.SETUP_NOTICE_SECONDS", 0.2)
    other = ViewStore(ledger.settings.store(), gate=ledger.writing)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with other.transaction(lock=LOCK_NAME):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    threading.Timer(1.0, release.set).start()
    try:
        with caplog.at_level("WARNING", logger="vledger.projections"):
            began = time.monotonic()
            started = ReadModels(ledger)  # sets its views up once the holder lets them go
            waited = time.monotonic() - began
        started.close()
    finally:
        release.set()
        holder.join(10)
        other.close()
    assert "another process holds" in caplog.text
    assert waited >= 0.8


class _RefusedAfterAWrite:
    """A view whose second statement the store refuses (NULL into a NOT NULL column), after a
    first one whose result nobody reads: on PostgreSQL both go out in one pipeline."""

    name = "refused"
    schema_version = 1
    tables: ClassVar[dict[str, tuple[str, ...]]] = {"refused_rows": ("n",)}

    def create(self, cur: ViewCursor) -> None:
        cur.execute("CREATE TABLE IF NOT EXISTS refused_rows (n BIGINT PRIMARY KEY, "
                    "label TEXT NOT NULL)")

    def drop(self, cur: ViewCursor) -> None:
        cur.execute("DROP TABLE IF EXISTS refused_rows")

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None:
        cur.executemany("INSERT INTO refused_rows (n, label) VALUES (?, ?)",
                        [(e.position, "ok") for e in events])
        if events[-1].position > 3:
            cur.executemany("INSERT INTO refused_rows (n, label) VALUES (?, ?)",
                            [(-e.position, None) for e in events])


def test_a_statement_the_store_refuses_in_a_catch_up_commits_nothing_of_it(
        ledger: Ledger) -> None:
    """A short catch-up's writes are pipelined on PostgreSQL: the store's refusal of one of
    them still fails the whole transaction, rows and position, and the runner says where."""
    volunteer = make_volunteer(ledger)
    serve(ledger, volunteer, make_long_activity(ledger, make_unit(ledger)), date(2017, 3, 3))
    store = ViewStore(ledger.settings.store())
    try:
        runner = Runner(ledger.recorder, store, [_RefusedAfterAWrite()])  # type: ignore[list-item]
        runner.catch_up(until=3)
        with pytest.raises(Exception, match=r"(?i)null"):
            runner.catch_up()
        assert runner.positions() == {"refused": 3}
        assert runner.failure is not None and runner.failure[0] == 3
        with store.reading() as cur:
            assert cur.execute("SELECT n FROM refused_rows ORDER BY n").fetchall() == [
                (1,), (2,), (3,)]
    finally:
        store.close()


def test_views_that_read_events_the_store_lost_say_so_and_keep_saying_it(
        ledger: Ledger) -> None:
    """bb10 F3: the last events deleted from the store after the views read them. On SQLite
    the next writes take those positions again, and views that read past them would never
    count them, silently. The runner notes it as its failure (/readyz 503) at start and when
    following, and keeps it after new writes; `vledger serve` refuses to start (test_cli)."""
    from tests.factories import tamper_with_events

    volunteer = make_volunteer(ledger)
    activity = make_long_activity(ledger, make_unit(ledger))
    serve(ledger, volunteer, activity, date(2017, 3, 3))
    store = ViewStore(ledger.settings.store())
    try:
        following = Runner(ledger.recorder, store, [HoursProjection()])
        following.catch_up()
        read = ledger.head()
        tamper_with_events(store, ledger, "DELETE FROM {table} WHERE {id} > ?", (read - 2,))
        assert following.catch_up() == read  # the follower's next look notes it
        assert following.failure is not None and following.failure[0] == read - 2
        assert f"views have read to {read}" in following.failure[1]

        starting = Runner(ledger.recorder, store, [HoursProjection()])
        assert starting.failure is not None and "restore the store" in starting.failure[1]
        if store.postgres:  # a sequence never gives a position twice
            serve(ledger, volunteer, activity, date(2017, 3, 4))  # a write after the loss
            serve(ledger, volunteer, activity, date(2017, 3, 5))
        else:  # SQLite would give the lost positions again: the write is refused (bb38 F4)
            with pytest.raises(StoreAltered, match="had given positions up to"):
                serve(ledger, volunteer, activity, date(2017, 3, 4))
        starting.catch_up()
        assert starting.failure is not None  # sticky
        starting.rebuild()  # accepting the store as it is now
        ledger.accept_positions()  # as `vledger projections rebuild` does after every view
        serve(ledger, volunteer, activity, date(2017, 3, 6))
        assert starting.failure is None and starting.catch_up() == ledger.head()
        assert Runner(ledger.recorder, store, [HoursProjection()]).failure is None
    finally:
        store.close()


def test_a_failure_another_process_got_past_is_cleared_without_new_events(
        ledger: Ledger) -> None:
    """bb13 F2: a worker whose catch-up failed on a full disk kept /readyz at 503 for minutes
    after the other worker caught the views up, until a new write reached it."""
    make_unit(ledger)
    store = ViewStore(ledger.settings.store())
    try:
        stopped = Runner(ledger.recorder, store, [HoursProjection()])
        stopped.failure = (1, "OperationalError: database or disk is full")
        Runner(ledger.recorder, store, [HoursProjection()]).catch_up()  # the other worker
        stopped.catch_up()  # its follower's next look: nothing new to fold
        assert stopped.failure is None
    finally:
        store.close()
