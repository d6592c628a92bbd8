"""Builders shared by the tests: a few lines each, with defaults that satisfy every rule.

Append new builders at the end; other tests rely on the ones already here.
"""

from __future__ import annotations

import itertools
import threading
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ledger import Actor, Ledger, Origin, Role, SessionRecord, SessionWritten

CST = timezone(timedelta(hours=8), "CST")  # district time, Asia/Shanghai has no DST
ADMIN = Origin(Actor(id="test-admin", role=Role.admin), source="test")
COMMITTEE = Origin(Actor(id="test-committee", role=Role.committee), source="test")
AUDITOR = Origin(Actor(id="test-auditor", role=Role.auditor), source="test")

# Lei Feng Day 2017: the default activity runs 08:00–18:00 district time.
DAY = date(2017, 3, 5)
ACTIVITY_STARTS = datetime(2017, 3, 5, 8, 0, tzinfo=CST)
ACTIVITY_ENDS = datetime(2017, 3, 5, 18, 0, tzinfo=CST)

_serial = itertools.count(1)


def at(hour: int, minute: int = 0, second: int = 0, day: date = DAY) -> datetime:
    """An instant in district time on a day (Lei Feng Day 2017 by default)."""
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=CST)


def recorder_of(unit_id: str) -> Origin:
    """A recorder bound to one unit."""
    return Origin(Actor(id=f"test-recorder-{unit_id}", role=Role.recorder, unit_id=unit_id),
                  source="test")


def make_unit(ledger: Ledger, kind: str = "town", name: str | None = None,
              parent_id: str | None = None, origin: Origin = ADMIN) -> str:
    """A registered unit's id."""
    return ledger.register_unit(origin, name or f"unit {next(_serial)}", kind,
                                parent_id=parent_id).id


def make_volunteer(ledger: Ledger, home_unit_id: str | None = None,
                   registered_on: date = date(2017, 1, 1), name: str | None = None,
                   origin: Origin = ADMIN) -> str:
    """A registered volunteer's id (in a new town unless a home unit is given)."""
    unit_id = home_unit_id or make_unit(ledger)
    written, _number = ledger.register_volunteer(origin, name or f"volunteer {next(_serial)}",
                                                 unit_id, registered_on)
    return written.id


def make_activity(ledger: Ledger, organiser_unit_id: str | None = None,
                  program_code: str = "A1", starts_at: datetime = ACTIVITY_STARTS,
                  ends_at: datetime = ACTIVITY_ENDS, origin: Origin = ADMIN) -> str:
    """A planned activity's id (organised by a new town unless an organiser is given)."""
    unit_id = organiser_unit_id or make_unit(ledger)
    return ledger.plan_activity(origin, program_code, unit_id, f"activity {next(_serial)}",
                                starts_at, ends_at).id


def session_record(volunteer_id: str, activity_id: str, started_at: datetime | None = None,
                   ended_at: datetime | None = None,
                   source_record_id: str | None = None) -> SessionRecord:
    """A session record, 09:00–10:00 on Lei Feng Day unless told otherwise."""
    return SessionRecord(
        volunteer_id=volunteer_id,
        activity_id=activity_id,
        started_at=started_at or at(9),
        ended_at=ended_at or at(10),
        source_record_id=source_record_id or f"src-{next(_serial)}",
    )


def record(ledger: Ledger, volunteer_id: str, activity_id: str,
           started_at: datetime | None = None, ended_at: datetime | None = None,
           source_record_id: str | None = None, origin: Origin = ADMIN) -> SessionWritten:
    """Record one session (09:00–10:00 on Lei Feng Day unless told otherwise)."""
    return ledger.record_session(
        origin, session_record(volunteer_id, activity_id, started_at, ended_at, source_record_id)
    )


def live_minutes(ledger: Ledger, volunteer_id: str) -> int:
    """The minutes of a volunteer's live sessions, read from the session aggregates."""
    volunteer = ledger.get_volunteer(volunteer_id)
    return sum(
        ledger.get_session(session_id).minutes
        for session_id, (_start, _end, live) in volunteer.sessions.items()
        if live
    )


# -- read-model builders (tests/projections) ------------------------------------------------

YEAR_STARTS = datetime(2017, 1, 1, 0, 0, tzinfo=CST)
YEARS_END = datetime(2018, 12, 31, 23, 59, tzinfo=CST)


def make_long_activity(ledger: Ledger, organiser_unit_id: str, program_code: str = "A1",
                       starts_at: datetime = YEAR_STARTS, ends_at: datetime = YEARS_END) -> str:
    """An activity open through 2017 and 2018, so sessions may fall on any day."""
    return make_activity(ledger, organiser_unit_id, program_code, starts_at, ends_at)


def serve(ledger: Ledger, volunteer_id: str, activity_id: str, day: date, hours: float = 1.0,
          start_hour: int = 9) -> SessionWritten:
    """Record a session of `hours` starting at `start_hour` district time on `day`."""
    started = at(start_hour, day=day)
    return record(ledger, volunteer_id, activity_id, started,
                  started + timedelta(minutes=round(hours * 60)))


def transfer(ledger: Ledger, volunteer_id: str, to_unit_id: str, effective_on: date) -> int:
    """Move a volunteer to another unit from a date on; returns the position."""
    return ledger.transfer_volunteer(ADMIN, volunteer_id, to_unit_id, effective_on).position


def train(ledger: Ledger, volunteer_id: str, completed_on: date, hours: float = 2.0) -> int:
    """Record a district-level training; returns the position."""
    return ledger.complete_training(ADMIN, volunteer_id, "district", "centralised", "core",
                                    "volunteer basics", completed_on, hours).position


def together(count: int, call: Any) -> list[Any]:
    """Run `call(i)` in `count` threads released at once; each result or exception."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        start.wait(timeout=30)
        try:
            results[i] = call(i)
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def recorded_together(ledger: Ledger, records: list[SessionRecord]
                      ) -> tuple[list[Any], list[int]]:
    """Each record sent from its own thread at once (as concurrent API writers do): each
    result or exception, and the sizes of the batches the ledger grouped them into."""
    sizes: list[int] = []
    alone = ledger.record_sessions

    def spied(origin: Any, batch: Any) -> Any:
        sizes.append(len(batch))
        return alone(origin, batch)

    ledger.record_sessions = spied  # type: ignore[method-assign]
    try:
        return together(len(records), lambda i: ledger.record_session(ADMIN, records[i])), sizes
    finally:
        del ledger.record_sessions


def sent_again_meanwhile(ledger: Ledger, monkeypatch: Any, send: Any) -> list[Any]:
    """Make `send` (the same keyed request again) land after the ledger's next keyed write
    looked for an earlier send and before it is stored, as a second send at the same moment
    does. The list it returns holds what `send` answered, once it ran."""
    recognise, raced, started = ledger._recognise, [], []

    def racing_recognise(events: Any, keys: Any) -> None:
        recognise(events, keys)
        if not started:
            started.append(True)
            raced.append(send())

    monkeypatch.setattr(ledger, "_recognise", racing_recognise)
    return raced


# -- auditor read side: history index and audit log (tests/projections) --------------------


# This section keeps its own imports so that appending it left the lines above untouched.
def lands_before_next_save(ledger: Ledger, monkeypatch: Any, other: Any) -> list[bool]:
    """Make `other` (another write) land after the ledger's next write was checked, before it
    is saved: what a request running at the same moment does. The list it returns holds True
    once `other` ran."""
    save, ran = ledger._save_recorded, []

    def racing(*aggregates: Any, **guarded: Any) -> Any:
        if not ran:
            ran.append(True)
            other()  # its own save goes straight through
        return save(*aggregates, **guarded)

    monkeypatch.setattr(ledger, "_save_recorded", racing)
    return ran


from projections.models import auditor_views  # noqa: E402
from projections.runner import Runner  # noqa: E402
from projections.store import ViewStore  # noqa: E402


def audit_runner(ledger: Ledger, page_size: int = 2000) -> Runner:
    """A `Runner` of the auditor's views (the history index, the audit log and the versions
    it logged) on the ledger's own store."""
    return Runner(ledger.recorder, ViewStore(ledger.settings.store()), auditor_views(),
                  page_size=page_size)


def grant_volunteer_award(ledger: Ledger, volunteer_id: str, year: int = 2017,
                          decision_ref: str = "decision 1") -> str:
    """Publish lenient rules for the year's most beautiful volunteer and grant it; the award id."""
    ledger.publish_award_rules(ADMIN, "most_beautiful_volunteer", year, {"min_hours_in_year": 0})
    return ledger.grant_award(COMMITTEE, "most_beautiful_volunteer", year, volunteer_id,
                              decision_ref).id


def fill_ledger(ledger: Ledger, sessions: int = 7) -> str:
    """About twenty events: a unit, a volunteer, an activity and the volunteer's sessions."""
    unit_id = make_unit(ledger)
    volunteer_id = make_volunteer(ledger, home_unit_id=unit_id)
    activity_id = make_activity(ledger, organiser_unit_id=unit_id)
    for i in range(sessions):
        record(ledger, volunteer_id, activity_id, at(8 + i), at(8 + i, 30))
    return volunteer_id


def tamper_with_events(store: ViewStore, ledger: Ledger, sql: str,
                       params: tuple[object, ...]) -> None:
    """Change the event store behind the ledger's back: `{table}` and `{id}` are filled in."""
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    column = "notification_id" if store.postgres else "rowid"
    with store.transaction() as cur:
        cur.execute(sql.format(table=table, id=column), params)


def correct(ledger: Ledger, session_id: str, started_at: datetime, ended_at: datetime,
            reason: str = "clerk typed the wrong hour", origin: Origin = ADMIN) -> int:
    """Correct a session's served time; returns its minutes afterwards."""
    return ledger.correct_session(origin, session_id, started_at, ended_at, reason).minutes


def void(ledger: Ledger, session_id: str, reason: str = "recorded twice on paper",
         origin: Origin = ADMIN) -> None:
    """Void a session."""
    ledger.void_session(origin, session_id, reason)


def resident_id(born: str, area: str = "350402", sequence: str = "123") -> str:
    """An 18-digit resident id number (GB 11643-1999) born on `born` (YYYYMMDD), with its
    check character."""
    body = f"{area}{born}{sequence}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
