"""Rebuilding views from position 0, beside reading and decoding the same events raw."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.events import timed_rows, timed_scan
from ledger import Ledger, Settings
from ledger.collector import bulk_collection


def rebuild(url: str, all_views: bool) -> dict[str, Any]:
    """Rebuild the read models and the volunteer history (the views of hours, rankings,
    bulletins, eligibility and history); with `all_views` also the audit log (Merkle tree)."""
    from projections.history import HistoryIndex
    from projections.models import ReadModels, auditor_views

    ledger = Ledger(Settings(database_url=url))
    models = ReadModels(ledger, extra=auditor_views() if all_views else [HistoryIndex()])
    try:
        began = time.perf_counter()
        position = models.runner.rebuild()
        seconds = time.perf_counter() - began
        events = ledger.head()
    finally:
        models.close()
        ledger.close()
    return {"views": [p.name for p in models.runner.projections], "position": position,
            "events": events, "rebuild_s": round(seconds, 2),
            "events_per_s": round(events / seconds, 1)}


def raw_scan(url: str) -> dict[str, Any]:
    """`recorder.select_notifications` in pages of the runner's size, each state JSON-decoded
    (with the collector as a rebuild has it)."""
    with bulk_collection():
        count, seconds = timed_scan(url, lambda n: json.loads(n.state))
        rows, rows_seconds = timed_rows(url)
    return {"events": count, "scan_s": round(seconds, 2), "events_per_s": round(count / seconds, 1),
            # The runner's own page reads (plain rows, each event's JSON decoded only where a
            # view needs it): how much of a rebuild's lead over the library is its reading.
            "rows_s": round(rows_seconds, 2), "rows_per_s": round(rows / rows_seconds, 1)}
