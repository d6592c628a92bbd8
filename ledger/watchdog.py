"""The watchdog on PostgreSQL connections: a statement the server does not answer is cut.

How it decides, and what the pools do while the server is silent: see ledger/deadlines.py.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, get_origin

import psycopg

from ledger.deadlines import StoreDeadlines, StoreSilent, check_dropped

log = logging.getLogger("vledger.store")
C = TypeVar("C", bound=type)
PROBE_SECONDS = 1.0  # how often a silent server is tried again
SILENT = "the store did not answer a new connection when last tried; nothing was sent"


class Watchdog:
    """Cuts the connections whose server stopped answering (see the module's docstring).

    Its thread starts with the first wait it watches and looks for overdue ones four times
    per `silence` (a wait is cut at most a quarter of `silence` late). It
    tries the server with `connect`, a new connection made and closed at once (no statement:
    a server that completes a connection's start-up runs)."""

    def __init__(self, connect: Callable[[], Any], deadlines: StoreDeadlines) -> None:
        self._connect = connect
        self.deadlines = deadlines
        self._lock = threading.Lock()
        self._woken = threading.Condition(self._lock)
        self._waits: dict[int, tuple[float, int]] = {}  # wait -> (when overdue, socket fd)
        self._numbers = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        # When a new connection last failed to answer, until one does (`silent`): then the
        # server is tried every PROBE_SECONDS, waits or not, to learn when it is back.
        self._unanswered_at: float | None = None
        self._probed_at = 0.0
        self.cut = 0  # connections cut so far (for tests and logs)

    @property
    def silent(self) -> bool:
        """Whether the server did not answer a new connection when last tried. A statement
        then fails at once rather than wait: under a frozen server, requests queued behind
        one another (writes grouped into one transaction, a pool's connections) would each
        wait out the deadline in turn."""
        return self._unanswered_at is not None

    def unanswered(self) -> None:
        """A new connection (a pool's) was refused or timed out: the server is silent from
        now until one answers. While it is down, requests then fail at once rather than
        each wait out a pool's timeout."""
        with self._lock:
            if self._unanswered_at is None:
                self._unanswered_at = self._probed_at = time.monotonic()
                log.warning("the store refused or did not complete a new connection")
            self._start()
            self._woken.notify()

    def _start(self) -> None:
        """Start the thread (under the lock), once."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="vledger-watchdog")
            self._thread.start()

    def watch(self, fd: int) -> int:
        """Start watching a wait for the server on socket `fd`; returns its number."""
        with self._lock:
            number = next(self._numbers)
            self._waits[number] = (time.monotonic() + self.deadlines.silence, fd)
            self._start()
        # Not woken: a statement's wait is a few milliseconds, and waking the thread for each
        # cost a thread switch per statement. It looks every quarter of `silence` instead.
        return number

    def done(self, number: int) -> None:
        """The wait ended (answered, or failed)."""
        with self._lock:
            self._waits.pop(number, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._woken.notify()

    def _run(self) -> None:
        while self._next_round():
            answers = self._server_answers()
            with self._lock:
                now = time.monotonic()
                overdue = {n: fd for n, (due, fd) in self._waits.items() if due <= now}
                for number, fd in overdue.items():
                    if answers:  # slow, not gone: watch it again
                        self._waits[number] = (now + self.deadlines.silence, fd)
                    else:
                        # Under the lock the wait is still on, so its socket is still open.
                        del self._waits[number]
                        self.cut += 1  # counted first: the shutdown wakes its waiter
                        _shut_down(fd)
            if overdue and not answers:
                log.warning("the store did not answer for %g s, nor a new connection within "
                            "%d s: %d connection(s) cut", self.deadlines.silence,
                            self.deadlines.connect_timeout, len(overdue))

    def _next_round(self) -> bool:
        """Sleep until a wait is overdue, or while the server is silent until it is time to
        try it again (True), or until the watchdog is closed (False)."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                due = [d for d, _ in self._waits.values()]
                if self._unanswered_at is not None:
                    due.append(self._probed_at + PROBE_SECONDS)
                if due and min(due) <= now:
                    return True
                self._woken.wait(min([*due, now + self.deadlines.silence / 4]) - now)
            return False

    def _server_answers(self) -> bool:
        """Whether a new connection gets an answer: a server that refuses it with an error
        of its own (too many clients) runs; one that times out or is refused does not."""
        self._probed_at = time.monotonic()
        was_silent = self.silent
        answers = self._try_server()
        self._unanswered_at = None if answers else (self._unanswered_at or self._probed_at)
        if answers and was_silent:
            log.warning("the store answers again")
        return answers

    def _try_server(self) -> bool:
        try:
            self._connect().close()
        except psycopg.OperationalError as error:
            return not no_answer(error)
        return True


def no_answer(error: psycopg.OperationalError) -> bool:
    """Whether a failed connection attempt got no answer from the server (timed out, or
    refused: nothing listens), rather than the server's own refusal (too many clients, a
    password), which shows that it runs."""
    text = str(error)
    return (isinstance(error, psycopg.errors.ConnectionTimeout)
            or "refused" in text or "timeout expired" in text)


def _shut_down(fd: int) -> None:
    """Shut a connection's socket down under libpq's feet: its blocked read sees the end."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def watched(base: C, watchdog: Watchdog) -> C:
    """A subclass of psycopg's `Connection` or `AsyncConnection` (`base`) whose waits for the
    server without a deadline of their own (statements, commits, COPY) `watchdog` watches.
    Waits with one (notifications, cancellation) are left to it. A connection attempt that
    gets no answer tells the watchdog (`Watchdog.unanswered`)."""
    parent: Any = get_origin(base) or base  # the class of `Connection[DictRow]`
    if issubclass(parent, psycopg.AsyncConnection):
        async def await_(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
            if args[1:] or kwargs.get("timeout") is not None:
                return await parent.wait(self, gen, *args, **kwargs)
            _refuse_if_silent(self, watchdog)
            number = watchdog.watch(self.pgconn.socket)
            try:
                return await parent.wait(self, gen, *args, **kwargs)
            finally:
                watchdog.done(number)

        async def connect_async(cls: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await parent.connect.__func__(cls, *args, **kwargs)
            except psycopg.OperationalError as error:
                if no_answer(error):
                    watchdog.unanswered()
                raise

        return type(f"Watched{parent.__name__}", (parent,),  # type: ignore[return-value]
                    {"wait": await_, "connect": classmethod(connect_async)})

    def wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
        if args[1:] or kwargs.get("timeout") is not None:
            return parent.wait(self, gen, *args, **kwargs)
        _refuse_if_silent(self, watchdog)
        number = watchdog.watch(self.pgconn.socket)
        try:
            return parent.wait(self, gen, *args, **kwargs)
        finally:
            watchdog.done(number)

    def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return parent.connect.__func__(cls, *args, **kwargs)
        except psycopg.OperationalError as error:
            if no_answer(error):
                watchdog.unanswered()
            raise

    return type(f"Watched{parent.__name__}", (parent,),  # type: ignore[return-value]
                {"wait": wait, "connect": classmethod(connect)})


def _refuse_if_silent(conn: Any, watchdog: Watchdog) -> None:
    """While the server is silent, send nothing: StoreSilent, before the statement's first
    byte (so a COMMIT refused here was never sent), and the connection closed (as psycopg
    closes one whose cancellation failed), so that its pool drops it rather than hand it out
    again to a frozen server."""
    if watchdog.silent:
        conn.pgconn.finish()
        raise StoreSilent(SILENT)


def refuse_while_silent(pool: Any, watchdog: Watchdog) -> None:
    """Make a psycopg_pool pool (sync or async) refuse a connection at once (StoreSilent)
    while the server is silent, rather than wait its timeout for a new one that the frozen
    server will not complete: under a frozen server, writes grouped into one transaction
    each waited out the pool's timeout behind the one before (8 s for 50 writes)."""
    getconn = pool.getconn
    if inspect.iscoroutinefunction(getconn):
        async def refusing_async(timeout: float | None = None) -> Any:
            if watchdog.silent:
                raise StoreSilent(SILENT)
            return await getconn(timeout)

        pool.getconn = refusing_async
        return

    def refusing(timeout: float | None = None) -> Any:
        if watchdog.silent:
            raise StoreSilent(SILENT)
        return getconn(timeout)

    pool.getconn = refusing


def bound_pool(pool: Any, watchdog: Watchdog) -> None:
    """Bound a psycopg_pool `ConnectionPool` not yet opened: how long it waits for a
    connection and for one to open, `watchdog` on its connections' statements, and
    `check_dropped` on each connection it hands out (after a restart or an outage, every
    pooled connection is dead, and each would otherwise fail one request)."""
    deadlines = watchdog.deadlines
    pool.timeout = deadlines.wait
    pool.kwargs = {**(pool.kwargs or {}), "connect_timeout": deadlines.connect_timeout}
    pool.connection_class = watched(pool.connection_class, watchdog)
    pool._check = check_dropped  # no public setter; the constructor's `check` argument
    refuse_while_silent(pool, watchdog)
