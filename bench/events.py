"""Reading every stored event page by page, decoded the read side's way."""

from __future__ import annotations

from collections.abc import Iterator

from eventsourcing.persistence import ApplicationRecorder

from projections.feed import FeedEvent, decode_page
from projections.runner import PAGE_SIZE


def all_events(recorder: ApplicationRecorder, page_size: int = PAGE_SIZE) -> Iterator[FeedEvent]:
    """Every event in position order."""
    start = 1
    while True:
        page = recorder.select_notifications(start, page_size)
        yield from decode_page(page)
        if len(page) < page_size:
            return
        start = page[-1].id + 1
