"""Reading every stored event page by page, decoded the read side's way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from eventsourcing.persistence import ApplicationRecorder, Notification

from ledger import Ledger, Settings
from projections.feed import FeedEvent, decode_page, read_events
from projections.runner import PAGE_SIZE


def all_pages(recorder: ApplicationRecorder,
              page_size: int = PAGE_SIZE) -> Iterator[list[Notification]]:
    """Every stored notification in position order, a page at a time, undecoded."""
    start = 1
    while True:
        page = list(recorder.select_notifications(start, page_size))
        yield page
        if len(page) < page_size:
            return
        start = page[-1].id + 1


def all_events(recorder: ApplicationRecorder, page_size: int = PAGE_SIZE) -> Iterator[FeedEvent]:
    """Every event in position order."""
    for page in all_pages(recorder, page_size):
        yield from decode_page(page)


def timed_scan(url: str, visit: Callable[[Notification], object]) -> tuple[int, float]:
    """Read every stored event of a store and `visit` each: (events, seconds)."""
    ledger = Ledger(Settings(database_url=url))
    try:
        began = time.perf_counter()
        count = 0
        for page in all_pages(ledger.recorder):
            for notification in page:
                visit(notification)
            count += len(page)
        return count, time.perf_counter() - began
    finally:
        ledger.close()


def timed_rows(url: str, page_size: int = PAGE_SIZE) -> tuple[int, float]:
    """Read every stored event as the runner does (`select_rows`, wrapped, not decoded):
    (events, seconds)."""
    ledger = Ledger(Settings(database_url=url))
    try:
        began = time.perf_counter()
        count, start = 0, 1
        while True:
            page = read_events(ledger.recorder, start, page_size)
            count += len(page)
            if len(page) < page_size:
                return count, time.perf_counter() - began
            start = page[-1].position + 1
    finally:
        ledger.close()
