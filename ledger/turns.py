"""Write turns on an SQLite file: one writer at a time, queued in the open, across processes.

SQLite lets one transaction write at a time. A writer that finds the file locked waits in
SQLite's busy handler, which sleeps in growing steps (up to 100 ms) and checks again: with two
API workers writing at once, a 6 ms write could wait a second or more. Our writers (ledger
saves, view catch-ups) take a turn first: a lock within the process, then an advisory
`flock` on `<file>.write-turn` across processes, tried every few milliseconds. So SQLite's
lock is free whenever one of ours asks for it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.errors import StoreBusy

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: turns are taken within a process only
    fcntl = None  # type: ignore[assignment]

WRITE_TURN_SECONDS = 20.0
_FIRST_WAIT, _LONGEST_WAIT = 0.0002, 0.002


class WriteTurns:
    """Turns to write one SQLite file, for the threads of this process and other processes."""

    def __init__(self, database: Path, seconds: float = WRITE_TURN_SECONDS) -> None:
        self.path = database.with_name(database.name + ".write-turn")
        self.seconds = seconds
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def _busy(self, seconds: float) -> StoreBusy:
        return StoreBusy(f"the store was busy for {seconds:g} s; try again shortly")

    @contextmanager
    def turn(self, seconds: float | None = None) -> Iterator[None]:
        """Hold the write turn for the duration of the block (StoreBusy after `seconds`, by
        default the turns' own)."""
        limit = self.seconds if seconds is None else max(0.0, seconds)
        deadline = time.monotonic() + limit
        if not self._lock.acquire(timeout=limit):
            raise self._busy(limit)
        try:
            if fcntl is None:
                yield
                return
            fd, wait = self._file(), _FIRST_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._busy(limit) from None
                    time.sleep(wait)
                    wait = min(2 * wait, _LONGEST_WAIT)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
