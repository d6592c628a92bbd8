"""The projection runner: pages of events, folded in memory, written with their positions at once.

eventsourcing's own `ProjectionRunner` cannot follow an SQLite application and commits once per
event, so the read side pulls pages itself: the rows `recorder.select_notifications` would answer,
read as plain tuples (`select_rows`, ledger/sqliterecorder.py). For each page,
every projection that is behind writes its rows and its own tracking position in ONE
transaction, under a store-wide writer lock: a crash between pages loses nothing and counts
nothing twice, and two processes catching up at once take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from eventsourcing.persistence import ApplicationRecorder

from ledger.collector import bulk_collection
from ledger.errors import StoreBusy
from projections.feed import FeedEvent, read_events
from projections.filling import Filling
from projections.store import ViewCursor, ViewStore, table_names

PAGE_SIZE = 2000
REBUILD_PAGE_SIZE = 10_000  # a rebuild folds bigger pages: fewer, larger commits
REBUILD_PAGES_PER_TRANSACTION = 5  # and commits every few pages (memory stays one page)
BULK_EVENTS = 10_000  # a catch-up this far behind runs with rare full collections (collector.py)
LOCK_NAME = "vledger-projections"
log = logging.getLogger("vledger.projections")
STOP_CHECK_SECONDS = 0.25  # a follower waiting for events notices `stop` this often
WAKE_GAP_SECONDS = 0.05  # and is woken by new events at most this often
WATCH_SECONDS = 0.05  # a reader waiting for views another process keeps asks this often
SETUP_NOTICE_SECONDS = 2.0  # a start waiting this long for the views' lock says why
POSITIONS_SQL = "SELECT name, position FROM projection_positions"

POSITIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS projection_positions ("
    "name TEXT PRIMARY KEY, position BIGINT NOT NULL, schema_version INTEGER NOT NULL, "
    "updated_at DOUBLE PRECISION NOT NULL)"
)


def _left(deadline: float) -> float:
    """Seconds until a `time.monotonic()` deadline (0 once past)."""
    return max(0.0, deadline - time.monotonic())


def _lowest(positions: dict[str, int]) -> int:
    return min(positions.values()) if positions else 0


def _settle(cur: ViewCursor, projections: Sequence[Projection]) -> None:
    """Settle the views that defer work while filled from empty (their optional `settle`)."""
    for projection in projections:
        settle = getattr(projection, "settle", None)
        if settle is not None:
            settle(cur)


class Projection(Protocol):
    """A read model: its tables, how to fold a page of events into them, how to drop them."""

    name: str
    schema_version: int  # bump when the tables or the fold change: the view is rebuilt

    def create(self, cur: ViewCursor) -> None: ...

    def drop(self, cur: ViewCursor) -> None: ...

    def apply(self, cur: ViewCursor, events: Sequence[FeedEvent]) -> None: ...

    # Optional: `settle(cur)`, called in the transaction of the last page of a catch-up, for a
    # view that defers some of its work while it is being filled from empty.


@dataclass(frozen=True)
class ViewStatus:
    name: str
    position: int
    head: int
    updated_at: float

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class PageReader:
    """Reads the pages of one catch-up; with `ahead`, the next page in a thread of its own
    while the current one is folded.

    On PostgreSQL most of a rebuild is the server's work (a profile of one over 95k events: the
    runner's thread waited on the server for 6 of 10.5 s), in another process and on another
    core: read ahead, the server's reading of the next page overlaps the fold of this one and
    the writing of its rows. Reading a page early reads the same events as reading it later:
    positions up to the catch-up's target are committed before it starts, and stored events
    never change.
    """

    def __init__(self, recorder: ApplicationRecorder, ahead: bool) -> None:
        self._recorder = recorder
        self._pool = ThreadPoolExecutor(1, "vledger-pages") if ahead else None
        self._next: tuple[tuple[int, int, int | None], Future[list[FeedEvent]]] | None = None

    def read(self, start: int, size: int, until: int | None) -> list[FeedEvent]:
        """The events from position `start`, at most `size` of them, none past `until`."""
        key = (start, size, until)
        ahead, self._next = self._next, None
        if ahead is not None and ahead[0] == key:
            events = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            events = self._fetch(*key)
        if (self._pool is not None and len(events) == size
                and (until is None or events[-1].position < until)):
            following = (events[-1].position + 1, size, until)
            self._next = (following, self._pool.submit(self._fetch, *following))
        return events

    def _fetch(self, start: int, size: int, until: int | None) -> list[FeedEvent]:
        return read_events(self._recorder, start, size, until)

    def close(self) -> None:
        """Stop reading ahead (a page being read is read to its end, then dropped)."""
        self._next = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _missing_events(head: int, positions: dict[str, int]) -> str | None:
    beyond = {name: p for name, p in positions.items() if p > head}
    if not beyond:
        return None
    return (f"the store's events end at position {head}, but views have read to "
            f"{max(beyond.values())} ({', '.join(sorted(beyond))}): events were deleted from "
            "the store after the views read them; restore the store from a backup taken "
            "before (`vledger verify` names what is gone). `vledger projections rebuild` "
            "accepts the store as it is only for events the audit log never took in")


def views_ahead_of(store: ViewStore, head: int) -> str | None:
    """Before a server starts: whether the views have read events the store no longer holds
    (see Runner.note_missing_events), as the message that says so."""
    with store.reading() as cur:
        if "projection_positions" not in table_names(cur):
            return None
        rows = cur.execute("SELECT name, position FROM projection_positions").fetchall()
    return _missing_events(head, {str(n): int(p) for n, p in rows})


class Runner:
    """Keeps a set of projections up to date with one application's events."""

    def __init__(self, recorder: ApplicationRecorder, store: ViewStore,
                 projections: Sequence[Projection], page_size: int = PAGE_SIZE) -> None:
        self.recorder = recorder
        self.store = store
        self.projections = list(projections)
        # The views that fill from empty, and one statement for every view's position and
        # whether each of those is filling: asked at the start of each catch-up transaction.
        self._fillings = [f for f in (getattr(p, "filling", None) for p in self.projections)
                          if isinstance(f, Filling)]
        self._positions_sql = POSITIONS_SQL + "".join(
            f" UNION ALL SELECT '{f.flag}', 0 FROM (SELECT 1 AS one FROM {f.flag} LIMIT 1) x"
            for f in self._fillings)
        self.page_size = page_size
        self.rebuild_page_size = max(page_size, REBUILD_PAGE_SIZE)
        self._lock = threading.Lock()
        self._known_position = 0
        # Why the last catch-up stopped short, until one gets through: (position, error).
        # A view that cannot fold an event stops there and lags for ever; /readyz says so.
        self.failure: tuple[int, str] | None = None
        # Events the views read that the store no longer holds (note_missing_events): kept as
        # the failure until a rebuild here, or a start on a restored or rebuilt store.
        self.missing: tuple[int, str] | None = None
        self.setup()

    def setup(self) -> None:
        """Create missing tables; rebuild any projection whose schema version changed.

        Another process may hold the views for minutes (`vledger projections rebuild`): a
        start that waits for it says so after SETUP_NOTICE_SECONDS, then waits on."""
        try:
            self._setup(SETUP_NOTICE_SECONDS)
        except StoreBusy:
            log.warning("waiting for the views, which another process holds (a rebuild or a "
                        "long catch-up, e.g. `vledger projections rebuild`); starting once it "
                        "lets them go")
            self._setup(None)

    def _setup(self, wait: float | None) -> None:
        with self.store.transaction(lock=LOCK_NAME, wait=wait) as cur:
            cur.execute(POSITIONS_DDL)
            stored = dict(cur.execute(
                "SELECT name, schema_version FROM projection_positions").fetchall())
            for projection in self.projections:
                known = stored.get(projection.name)
                if known is not None and known != projection.schema_version:
                    projection.drop(cur)
                    cur.execute("DELETE FROM projection_positions WHERE name = ?",
                                (projection.name,))
                    stored.pop(projection.name)
                projection.create(cur)
                if projection.name not in stored:
                    cur.execute(
                        "INSERT INTO projection_positions (name, position, schema_version, "
                        "updated_at) VALUES (?, 0, ?, ?)",
                        (projection.name, projection.schema_version, time.time()))
            # A view that is filling (created empty: a first start, or a view that holds no
            # session yet) and has read every event gets no page that would settle it: it is
            # settled here, or its reads would wait for the next event.
            head = self.head()
            positions = self._ours(cur.execute(POSITIONS_SQL).fetchall())
            _settle(cur, [p for p in self.projections if positions.get(p.name, 0) >= head])
        self.note_missing_events(head, positions)

    def note_missing_events(self, head: int, positions: dict[str, int]) -> str | None:
        """Views that have read further than the store's last event: events they read were
        deleted from the store since (by hand, or a partial restore). On SQLite the next
        writes would take those positions again, and views that read past them would never
        count them. Noted as the runner's failure (/readyz 503, logged); returns the
        message. A restore of the store, or a rebuild that accepts it as it is now
        (`vledger projections rebuild`), clears it."""
        message = _missing_events(head, positions)
        if message is None:
            return None
        log.error(message)
        self.failure = self.missing = (head, message)
        return message

    def head(self) -> int:
        return int(self.recorder.max_notification_id() or 0)

    def positions(self) -> dict[str, int]:
        return self._ours(self.store.query(POSITIONS_SQL))

    def _ours(self, rows: Sequence[Sequence[Any]]) -> dict[str, int]:
        names = {p.name for p in self.projections}
        return {name: int(pos) for name, pos in rows if name in names}

    def position(self) -> int:
        """How far every view has read (the lowest of their positions)."""
        return _lowest(self.positions())

    async def position_async(self) -> int:
        """`position` for a coroutine (ViewStore.read: no worker thread)."""
        return _lowest(self._ours(await self.store.read(POSITIONS_SQL)))

    async def watch_async(self, position: int, timeout: float) -> bool:
        """`wait_for` without `fold`, for a coroutine: whether the stored positions of views
        another process keeps reach `position` within `timeout` seconds, polled from the
        event loop (no worker thread held meanwhile)."""
        deadline = time.monotonic() + timeout
        while await self.position_async() < position:
            left = _left(deadline)
            if left == 0:
                return False
            await asyncio.sleep(min(WATCH_SECONDS, left))
        return True

    def status(self) -> list[ViewStatus]:
        head = self.head()
        with self.store.reading() as cur:
            rows = cur.execute(
                "SELECT name, position, updated_at FROM projection_positions").fetchall()
        names = {p.name for p in self.projections}
        return [ViewStatus(n, int(p), head, float(u)) for n, p, u in rows if n in names]

    def catch_up(self, until: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 enough: int | None = None, page_size: int | None = None,
                 pages_per_transaction: int = 1, deadline: float | None = None) -> int:
        """Apply the events not yet applied, up to `until` (by default, the head when it
        starts: it never chases writes made meanwhile); returns the position reached.

        With `enough` (a writer waiting for its own write), it returns as soon as the views
        have reached that position, however they got there. The writers of one batch queue
        on the runner's lock: the first catches up for all, and the others find the position
        reached without asking the store (asking it before the lock, each of fifty waiters
        made two queries: a fifth of a busy server's time). A rebuild reads bigger pages and
        commits several per transaction (`page_size`, `pages_per_transaction`).

        With `deadline` (a `time.monotonic()` instant) it waits for the runner's lock and the
        store's no longer than that, and returns the position known so far if another thread
        or process holds them past it (a rebuild, a stalled worker): a waiter answers in time.
        """
        if enough is not None and self._known_position >= enough:
            return self._known_position
        if until is None and progress is None and enough is None and self._reached():
            # Nothing new: no write turn needed. Views another process caught up are no longer
            # stopped here either (a full disk that was freed, say): /readyz says so again.
            self.failure = self.missing
            return self._known_position
        if not self._lock.acquire(timeout=-1 if deadline is None else _left(deadline)):
            return self._known_position
        try:
            if enough is not None and (self._known_position >= enough
                                       or self._reached(enough)):
                return self._known_position  # this thread, or another process, got there
            target = self.head() if until is None else until
            # A rebuild, a first start or a view whose schema changed: bulk work.
            bulk = target - self._known_position >= BULK_EVENTS
            # Read ahead on PostgreSQL only: there the server reads and writes in processes of
            # its own. On SQLite both threads would be Python's, taking turns on one lock.
            reader = PageReader(self.recorder, ahead=bulk and self.store.postgres)
            with bulk_collection() if bulk else contextlib.nullcontext(), \
                    contextlib.closing(reader):
                while True:
                    try:
                        reached, done = self._step(
                            reader, target, page_size or self.page_size,
                            pages_per_transaction, None if deadline is None else _left(deadline),
                            pipelined=not bulk)
                    except StoreBusy:
                        if deadline is None:
                            raise
                        return self._known_position  # another holds the views past the wait
                    except Exception as error:
                        self.failure = (self._stopped_at(), f"{type(error).__name__}: {error}")
                        raise
                    self.failure = self.missing
                    self._known_position = reached
                    if progress is not None:
                        progress(reached, self.head())
                    if done or (deadline is not None and _left(deadline) == 0):
                        return reached  # a waiter stops at its deadline; its pages are kept
        finally:
            self._lock.release()

    def _reached(self, goal: int | None = None) -> bool:
        """Whether the stored positions reach `goal` (by default the head); notes them.

        The stored position replaces the one this process knew, also when it is lower: a
        rebuild in another process (`vledger projections rebuild`) starts the views again
        from 0, and a reader that trusted the position it knew would be answered from views
        that no longer hold what it waits for.
        """
        positions = self.positions()
        stored = self._known_position = _lowest(positions)
        if goal is not None:
            return stored >= goal
        head = self.head()
        if self.missing is None and max(positions.values(), default=0) > head:
            self.note_missing_events(head, positions)
        return stored >= head

    def _stopped_at(self) -> int:
        try:
            return self.position()
        except Exception:  # the store itself is gone: the last position this process saw
            return self._known_position

    def _step(self, reader: PageReader, until: int | None, page_size: int,
              pages_per_transaction: int, wait: float | None = None,
              pipelined: bool = False) -> tuple[int, bool]:
        """Pages folded and committed with the positions at once.

        Returns (position, finished). One page per transaction when following; a rebuild puts
        several pages in one transaction, so a B-tree page its views touch again and again is
        written to the WAL once per transaction rather than once per page.
        """
        with self.store.transaction(lock=LOCK_NAME, wait=wait) as cur, \
                cur.pipelined() if pipelined else contextlib.nullcontext(), \
                contextlib.ExitStack() as known:
            # The positions, and which views are filling from empty, in one statement: the
            # flags hold for the transaction (a rebuild that sets one takes the same lock).
            positions = dict(cur.execute(self._positions_sql).fetchall())
            for filling in self._fillings:
                known.enter_context(filling.known(positions.pop(filling.flag, None) is not None))
            behind = {p.name: int(positions.get(p.name, 0)) for p in self.projections}
            for _ in range(pages_per_transaction):
                reached, finished = self._page(reader, cur, behind, until, page_size)
                if finished:
                    # A view filling from empty settles in the catch-up's last transaction,
                    # also when it found nothing more to read (a rebuild of an empty ledger).
                    _settle(cur, self.projections)
                    break
            return reached, finished

    def _page(self, reader: PageReader, cur: ViewCursor, behind: dict[str, int],
              until: int | None, page_size: int) -> tuple[int, bool]:
        """Fold one page into every view behind it; returns (position, finished)."""
        low = min(behind.values()) if behind else 0
        if until is not None and low >= until:
            return low, True
        events = reader.read(low + 1, page_size, until)
        if not events:
            return low, True
        last = events[-1].position
        moved = []
        for projection in self.projections:
            mine = behind[projection.name]
            todo = [e for e in events if e.position > mine] if mine > low else events
            if todo:
                projection.apply(cur, todo)
                moved.append(projection.name)
                behind[projection.name] = last
        if moved:  # one statement for the views the page moved (one round trip on PostgreSQL)
            cur.execute("UPDATE projection_positions SET position = ?, updated_at = ? WHERE "
                        f"name IN ({', '.join('?' * len(moved))})", (last, time.time(), *moved))
        return last, len(events) < page_size or (until is not None and last >= until)

    def wait_for(self, position: int, timeout: float, verify: bool = False,
                 fold: bool = True) -> bool:
        """Catch up until the views reach `position`, for at most `timeout` seconds, whoever
        holds the views meanwhile (a view already there answers at once: `catch_up` checks
        `enough` first).

        A writer waiting for its own write may trust the position this process knows. A
        reader (`verify`) asks the store: another process may have started the views again
        from 0 since, and the answer would come from views that do not hold the write yet.
        Without `fold`, it only watches the stored positions: another process keeps the views
        (a `vledger projections run` worker).
        """
        deadline = time.monotonic() + timeout
        if (verify or not fold) and self._reached(position):
            return True
        while True:
            if fold and self.catch_up(enough=position, deadline=deadline) >= position:
                return True
            if not fold and self._reached(position):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(WATCH_SECONDS, _left(deadline)))

    def rebuild(self, names: Sequence[str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> int:
        """Drop the named views (all by default) and refill them from position 0."""
        chosen = [p for p in self.projections if names is None or p.name in names]
        with self._lock, self.store.transaction(lock=LOCK_NAME) as cur:
            for projection in chosen:
                projection.drop(cur)
                projection.create(cur)
                cur.execute("UPDATE projection_positions SET position = 0, updated_at = ? "
                            "WHERE name = ?", (time.time(), projection.name))
        self._known_position = 0
        # Views that read events the store lost are read again from what it holds now (all of
        # them rebuilt: a view left alone may still have read past the store's end).
        self.missing = None
        reached = self.catch_up(progress=progress, page_size=self.rebuild_page_size,
                                pages_per_transaction=REBUILD_PAGES_PER_TRANSACTION)
        self.store.analyze()
        if names is not None:  # views not rebuilt may still be ahead of the store
            self.note_missing_events(self.head(), self.positions())
        return reached

    def follow(self, stop: threading.Event, interval: float = 0.5,
               failed: Callable[[Exception], None] | None = None) -> None:
        """Keep catching up until `stop` is set: after each commit of events on PostgreSQL,
        else every `interval` seconds (see `Wakeup`). A catch-up that fails ends the loop
        (the `vledger projections run` worker), or with `failed` is reported to it and tried
        again at the next wake-up (the API's follower)."""
        with Wakeup(self.recorder, self.store, stop) as wakeup:
            while not stop.is_set():
                try:
                    self.catch_up()
                except Exception as error:
                    if failed is None:
                        raise
                    failed(error)
                wakeup.wait(interval)


class Wakeup:
    """Waits until the ledger may hold new events, or `timeout` seconds at most.

    On PostgreSQL the library sends a NOTIFY in the transaction of every insert of events (on
    the recorder's `channel_name`), delivered when it commits: a follower that LISTENs on it
    catches up within milliseconds of another process's write instead of at its next poll.
    Notifications that arrive while it catches up wait on the connection, so none is missed,
    and one catch-up answers them all. On SQLite, or while the listening connection is lost,
    it waits `timeout` (polling); `stop` cuts a wait short when the follower stops.
    """

    def __init__(self, recorder: ApplicationRecorder, store: ViewStore,
                 stop: threading.Event, gap: float = WAKE_GAP_SECONDS) -> None:
        self._channel: str | None = getattr(recorder, "channel_name", None)
        self._store = store
        self._listens = self._channel is not None and store.postgres
        self._stop = stop
        self._conn: Any = None
        self._gap = gap
        self._woke = 0.0

    def __enter__(self) -> Wakeup:
        """Listen at once: a follower that catches up after this misses no commit."""
        if self._listens:
            try:
                self._listen()
            except Exception as error:
                log.warning("cannot listen for new events (%s); polling instead", error)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @property
    def listening(self) -> bool:
        return self._conn is not None

    def wait(self, timeout: float) -> None:
        if not self._listens or self._stop.is_set():
            self._stop.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        # Commits that come within `gap` of the last wake-up wait for the next one together:
        # under a stream of writes a follower catches up a few times a second, not per commit.
        pause = min(timeout, self._woke + self._gap - time.monotonic())
        if pause > 0:
            self._stop.wait(pause)
        try:
            conn = self._listen()
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                for _ in conn.notifies(timeout=min(left, STOP_CHECK_SECONDS), stop_after=1):
                    self._woke = time.monotonic()
                    return  # everything received so far came with it: one catch-up for all
        except Exception as error:  # the server went away: poll until it answers again
            log.warning("listening for new events failed (%s); polling instead", error)
            self.close()
            self._stop.wait(timeout)

    def _listen(self) -> Any:
        if self._conn is None:
            from psycopg import sql

            assert self._channel is not None
            conn = self._store.connect()
            try:
                conn.execute(sql.SQL("LISTEN {0}").format(sql.Identifier(self._channel)))
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to close
                conn.close()
