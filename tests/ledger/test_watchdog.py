"""The watchdog: a wait the server does not answer is cut once a new connection fails too."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from ledger.deadlines import StoreDeadlines
from ledger.watchdog import Watchdog, watched

QUICK = StoreDeadlines(wait=0.2, silence=0.2)


def _times_out() -> Any:
    raise psycopg.errors.ConnectionTimeout("connection timeout expired")


class _Answers:
    def close(self) -> None:
        pass


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def _cut_within(sock: socket.socket, seconds: float) -> bool:
    """Whether `sock` was shut down (its read sees the end) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def _watchdog(connect: Callable[[], Any]) -> Watchdog:
    return Watchdog(connect, QUICK)


def test_a_wait_unanswered_while_a_new_connection_times_out_is_cut(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    watchdog = _watchdog(_times_out)
    try:
        watchdog.watch(ours.fileno())
        assert _cut_within(ours, 5)
        assert watchdog.cut == 1 and watchdog.silent
    finally:
        watchdog.close()


def test_a_slow_statement_of_a_server_that_answers_is_not_cut(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    watchdog = _watchdog(_Answers)
    try:
        number = watchdog.watch(ours.fileno())
        assert not _cut_within(ours, 1.0)  # five times its silence
        watchdog.done(number)
        assert watchdog.cut == 0 and not watchdog.silent
    finally:
        watchdog.close()


def test_a_server_that_refuses_a_connection_with_an_error_of_its_own_answers(
        pair: tuple[socket.socket, socket.socket]) -> None:
    def too_many_clients() -> Any:
        raise psycopg.OperationalError("FATAL: sorry, too many clients already")

    ours, _ = pair
    watchdog = _watchdog(too_many_clients)
    try:
        watchdog.watch(ours.fileno())
        assert not _cut_within(ours, 1.0)
        assert not watchdog.silent
    finally:
        watchdog.close()


def test_a_silent_server_is_tried_again_until_it_answers(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    answering = False

    def connect() -> Any:
        return _Answers() if answering else _times_out()

    watchdog = _watchdog(connect)
    try:
        watchdog.watch(ours.fileno())
        assert _cut_within(ours, 5) and watchdog.silent
        answering = True
        deadline = time.monotonic() + 5
        while watchdog.silent:  # tried every PROBE_SECONDS, with no wait to watch
            assert time.monotonic() < deadline, "still silent"
            time.sleep(0.05)
    finally:
        watchdog.close()


def test_a_wait_that_ended_is_forgotten(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    watchdog = _watchdog(_times_out)
    try:
        watchdog.done(watchdog.watch(ours.fileno()))
        assert not _cut_within(ours, 0.6)
        assert watchdog.cut == 0
    finally:
        watchdog.close()


def test_a_refused_connection_makes_the_server_silent_until_one_answers() -> None:
    answering = False

    def connect() -> Any:
        return _Answers() if answering else _times_out()

    watchdog = _watchdog(connect)
    try:
        with pytest.raises(psycopg.OperationalError):  # nothing listens on port 1
            watched(psycopg.Connection, watchdog).connect(
                host="127.0.0.1", port=1, user="postgres", dbname="test", connect_timeout=2)
        assert watchdog.silent
        answering = True
        deadline = time.monotonic() + 5
        while watchdog.silent:
            assert time.monotonic() < deadline, "still silent"
            time.sleep(0.05)
    finally:
        watchdog.close()
