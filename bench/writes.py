"""Writing: the demo district through the ledger's use cases, and raw eventsourcing saves."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.events import all_events
from ledger import Ledger, Settings
from ledger.collector import bulk_collection
from ledger.demo import SESSION_BATCH, generate_district

EVENTS_PER_SESSION = 2.25  # measured: a session is 2 events, plus registrations and activities


def demo_size(events: int) -> tuple[int, int]:
    """(volunteers, sessions) of a demo district of about `events` events."""
    sessions = max(100, round(events / EVENTS_PER_SESSION))
    return max(20, sessions // 10), sessions


def populate(url: str, events: int, seed: int) -> dict[str, Any]:
    """Fill an empty store with the demo district; times the `record_sessions` calls."""
    volunteers, sessions = demo_size(events)
    ledger = Ledger(Settings(database_url=url))
    try:
        began = time.perf_counter()
        summary = generate_district(ledger, volunteers, sessions, seed)
        total = time.perf_counter() - began
    finally:
        ledger.close()
    return {
        "volunteers": summary.volunteers, "sessions": summary.sessions,
        "activities": summary.activities, "events": summary.position, "demo_s": round(total, 2),
        "record_sessions_s": round(summary.recording_seconds, 2),
        "sessions_per_s": round(summary.sessions / summary.recording_seconds, 1),
        "stages_s": {k: round(v, 2) for k, v in summary.seconds.items()},
    }


class PlainSession(Aggregate):
    """A service session as a plain eventsourcing aggregate: one event, no rules."""

    @event("Recorded")
    def __init__(self, volunteer_id: str, activity_id: str, program_code: str,
                 organiser_unit_id: str, started_at: datetime, ended_at: datetime, minutes: int,
                 service_date: str, source_record_id: str) -> None:
        self.volunteer_id = volunteer_id
        self.minutes = minutes


class PlainApp(Application[Any]):
    """The baseline: eventsourcing with nothing of ours."""

    name = "PlainSessions"


def raw_import(ledger_url: str, baseline_url: str, ours_url: str | None = None) -> dict[str, Any]:
    """Save the ledger's sessions as plain aggregates with `app.save(*aggs)`, same batches,
    with the collector as the demo's import has it (`bulk_collection`): with the library's
    own recorder (the baseline), and with ours into an empty store of its own (`ours_url`:
    how much of the gap is the ledger's rules, not the store)."""
    found = _raw_save(ledger_url, _plain_env(baseline_url, ours=False))
    if ours_url is None:
        return found
    mine = _raw_save(ledger_url, _plain_env(ours_url, ours=True))
    return {**found, "our_recorder_sessions_per_s": mine["sessions_per_s"],
            "our_recorder_save_s": mine["save_s"]}


def _plain_env(url: str, ours: bool) -> dict[str, str]:
    """The eventsourcing settings of a plain application on `url`: UUID ids, and the
    library's own recorder unless `ours`."""
    env = Settings(database_url=url).store().eventsourcing_env()
    env.pop("ORIGINATOR_ID_TYPE")  # plain aggregates have UUID ids
    if not ours:
        env.pop("APPLICATION_RECORDER_TOPIC")  # plain eventsourcing: the library's recorder
    return env


def _raw_save(ledger_url: str, env: dict[str, str]) -> dict[str, Any]:
    """Every session of the ledger saved again as a plain aggregate."""
    app = PlainApp(env=env)
    ledger = Ledger(Settings(database_url=ledger_url))
    seconds, count, batch = 0.0, 0, []
    try:
        with bulk_collection():
            # Streamed batch by batch: only the aggregates' construction and save are timed.
            for e in all_events(ledger.recorder):
                if e.type == "ServiceSession.Recorded":
                    batch.append(e.data)
                if len(batch) == SESSION_BATCH:
                    seconds += _save_plain(app, batch)
                    count, batch = count + len(batch), []
            if batch:
                seconds += _save_plain(app, batch)
                count += len(batch)
    finally:
        ledger.close()
        app.close()
    return {"sessions": count, "save_s": round(seconds, 2),
            "sessions_per_s": round(count / seconds, 1)}


def _save_plain(app: PlainApp, rows: list[dict[str, Any]]) -> float:
    """Build one batch of plain aggregates and save them at once; returns the seconds taken."""
    began = time.perf_counter()
    app.save(*[PlainSession(
        volunteer_id=r["volunteer_id"], activity_id=r["activity_id"],
        program_code=r["program_code"], organiser_unit_id=r["organiser_unit_id"],
        started_at=datetime.fromisoformat(r["started_at"]),
        ended_at=datetime.fromisoformat(r["ended_at"]), minutes=r["minutes"],
        service_date=r["service_date"], source_record_id=r["source_record_id"])
        for r in rows])
    return time.perf_counter() - began
