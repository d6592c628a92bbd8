"""Use cases that record service time: sessions one at a time or in batches, corrections, voids."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.access import require_role, require_unit
from ledger.activities import Activity
from ledger.base import STORE_UNAVAILABLE, LedgerBase, Written, check_version
from ledger.calendar import now, service_date, whole_minutes
from ledger.catalogue import Role
from ledger.errors import (
    DuplicateRecordConflict,
    LedgerError,
    StoreAltered,
    StoreBusy,
    TokenRevoked,
)
from ledger.grouping import GroupCommit
from ledger.guards import Grant, WriteGuard, current_grant, relying_on_grant
from ledger.provenance import Origin
from ledger.sessions import (
    RecordOutcome,
    ServiceSession,
    SessionRecord,
    correction_checks,
    record_checks,
    session_id_for,
)
from ledger.settings import Settings
from ledger.text import check_reason
from ledger.units import Unit
from ledger.volunteers import Volunteer

_RECORDED: type[Any] = ServiceSession.Recorded  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SessionWritten:
    """A session write: its id, its minutes, the position reached and whether it was new."""

    id: str
    minutes: int
    position: int
    created: bool


@dataclass(frozen=True)
class BatchResult:
    """The outcome of each record of a batch and the position the batch reached."""

    outcomes: list[RecordOutcome]
    position: int
    recorded: dict[str, int] = field(default_factory=dict)  # new session id -> its position

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def check_units_open(activity: Activity, unit_of: Callable[[str], Unit], day: str) -> None:
    """Service is recorded only on days (a session's service date) before the closing date of
    the unit that organises the activity and of its station (see `Unit.ensure_open_on`)."""
    unit_of(activity.organiser_unit_id).ensure_open_on(
        day, "started_at", "service at an activity it organised")
    if activity.station_unit_id:
        unit_of(activity.station_unit_id).ensure_open_on(
            day, "started_at", "service at an activity it hosted")


def check_member_unit_open(volunteer: Volunteer, unit_of: Callable[[str], Unit],
                           day: str) -> None:
    """The unit a volunteer belongs to on a service date is credited with the service (the
    members basis): it must not have closed by then. A closed unit's volunteers are
    transferred before they serve again, so no credit goes to a unit that no longer is."""
    unit_of(volunteer.unit_on(day)).ensure_open_on(
        day, "volunteer_id", "service by its volunteers")


def reused(rec: SessionRecord, prior: ServiceSession) -> DuplicateRecordConflict:
    return DuplicateRecordConflict(
        f"source_record_id {rec.source_record_id!r} was already used for another record "
        f"(session {prior.id})", "source_record_id")


class _Batch:
    """One attempt at a batch: the aggregates it loaded once and the sessions it created."""

    def __init__(self, ledger: RecordingUseCases, origin: Origin, thorough: bool,
                 staged_before: dict[str, datetime]) -> None:
        self.ledger = ledger
        self.origin = origin
        self.meta = origin.meta()
        self.thorough = thorough
        # The sessions earlier attempts of this same call staged, by id, with the instant
        # their Recorded event was made: one found stored with that instant is this call's
        # own (a commit whose answer the connection lost), not an earlier send's.
        self.staged_before = staged_before
        self.now = now()
        self.volunteers: dict[str, Volunteer] = {}
        self.activities: dict[str, Activity] = {}
        self.units: dict[str, Unit] = {}
        self.created: dict[str, ServiceSession] = {}
        self.touched: dict[str, Volunteer] = {}
        # What the accepted records were checked against and the batch does not save: the
        # activities (not cancelled) and the units (open on the day), at the versions read.
        self.consulted: dict[str, int] = {}

    def prefetch(self, records: Sequence[SessionRecord]) -> None:
        """Load every volunteer and activity the records name, one statement for each kind."""
        self.volunteers.update(self.ledger._borrow_many(
            Volunteer, {rec.volunteer_id for rec in records}))
        self.activities.update(self.ledger._borrow_many(
            Activity, {rec.activity_id for rec in records}))
        self.units.update(self.ledger._borrow_many(Unit, {
            unit_id for a in self.activities.values()
            for unit_id in (a.organiser_unit_id, a.station_unit_id) if unit_id} | {
            unit_id for v in self.volunteers.values() for _, unit_id in v.memberships}))

    def volunteer(self, volunteer_id: str) -> Volunteer:
        if volunteer_id not in self.volunteers:
            self.volunteers[volunteer_id] = self.ledger._refer(
                Volunteer, volunteer_id, "volunteer_id", "volunteer")
        return self.volunteers[volunteer_id]

    def activity(self, activity_id: str) -> Activity:
        if activity_id not in self.activities:
            self.activities[activity_id] = self.ledger._refer(
                Activity, activity_id, "activity_id", "activity")
        return self.activities[activity_id]

    def unit(self, unit_id: str) -> Unit:
        if unit_id not in self.units:
            self.units[unit_id] = self.ledger._find(Unit, unit_id, "unit")
        return self.units[unit_id]

    def existing(self, session_id: str, volunteer: Volunteer) -> ServiceSession | None:
        """The session already stored or staged for a source record id, if any.

        On the fast path a volunteer's own calendar answers; a retry asks the store, which also
        finds a source record id reused for another volunteer.
        """
        if session_id in self.created:
            return self.created[session_id]
        if not self.thorough and session_id not in volunteer.sessions:
            return None
        found = self.ledger._get(ServiceSession, session_id)
        if found is None and session_id in volunteer.sessions:
            # The volunteer's calendar holds it, the store does not: its events were deleted
            # by hand. Recorded again, it would count twice in every view that had read it
            # (bb36 F1).
            raise StoreAltered(session_id, 0, (
                f"volunteer {volunteer.id}'s calendar holds this session, but its events are "
                "gone from the store: deleted by hand after they were recorded; run vledger "
                "verify, and restore them from a backup"))
        return found

    def refuse_reused_id(self, session_id: str, rec: SessionRecord) -> None:
        """Answer a refused record as the thorough path would: the fast path learns of another
        volunteer's session with this source record id only when saving, which a refused record
        never reaches; so the answer would otherwise depend on the size of the batch."""
        if self.thorough:
            return
        prior = self.ledger._get(ServiceSession, session_id)
        if prior is not None and not prior.same_record(rec):
            raise reused(rec, prior) from None

    def record(self, index: int, rec: SessionRecord) -> RecordOutcome:
        """Check one record against every rule and stage it; raises no LedgerError but
        StoreAltered (what it would be checked against is not as logged)."""
        try:
            record_checks(rec.started_at, rec.ended_at, rec.source_record_id,
                          self.now).raise_found()
            activity = self.activity(rec.activity_id)
            require_unit(self.origin.actor, activity.organiser_unit_id, "sessions at activities")
            session_id = session_id_for(rec.source_record_id)
            volunteer = self.volunteer(rec.volunteer_id)
            prior = self.existing(session_id, volunteer)
            if prior is not None:
                if not prior.same_record(rec):
                    raise reused(rec, prior)
                if self.staged_before.get(prior.id) == prior.created_on:
                    # Stored by this call: its commit went through, then the connection
                    # dropped before the answer (a failover) and the retry found it. It is new
                    # to the caller (201), still counted once.
                    return RecordOutcome(index, "accepted", prior.id,
                                         0 if prior.is_voided else prior.minutes)
                # A voided session no longer counts: the repeat answers the minutes it counts now.
                return RecordOutcome(index, "duplicate", prior.id,
                                     0 if prior.is_voided else prior.minutes)
            day = service_date(rec.started_at).isoformat()
            try:
                activity.ensure_covers(rec.started_at, rec.ended_at, self.ledger.margin)
                check_units_open(activity, self.unit, day)
                check_member_unit_open(volunteer, self.unit, day)
                volunteer.book(session_id, rec.started_at, rec.ended_at, self.meta)
            except LedgerError:
                self.refuse_reused_id(session_id, rec)
                raise
        except StoreAltered:
            raise  # not this record's fault: the batch builds on nothing loaded unchecked
        except LedgerError as error:
            return RecordOutcome(index, "rejected", error=error)
        minutes = whole_minutes(rec.started_at, rec.ended_at)
        self.consulted[activity.id] = activity.version
        for unit_id in (activity.organiser_unit_id, activity.station_unit_id,
                        volunteer.unit_on(day)):
            if unit_id:
                self.consulted[unit_id] = self.units[unit_id].version
        # Made from its Recorded event directly: `ServiceSession(...)` would first match the
        # arguments to `__init__`'s parameters once more, then do the same.
        self.created[session_id] = ServiceSession._create(
            _RECORDED, volunteer_id=volunteer.id, activity_id=activity.id,
            program_code=activity.program_code, organiser_unit_id=activity.organiser_unit_id,
            station_unit_id=activity.station_unit_id, started_at=rec.started_at,
            ended_at=rec.ended_at, minutes=minutes,
            service_date=day, source_record_id=rec.source_record_id, id=session_id, **self.meta,
        )
        self.touched[volunteer.id] = volunteer
        return RecordOutcome(index, "accepted", session_id, minutes)


def _not_the_store(error: Exception) -> bool:
    """Whether a failed group of writes may be the fault of one of its items: not when the
    store did not answer or was busy (each item alone would wait and fail again), nor when
    the callers' token was revoked (the whole group is theirs). A record whose volunteer or
    activity is not as logged (StoreAltered) is one item's: the others are written alone."""
    return not isinstance(error, (*STORE_UNAVAILABLE, StoreBusy, TimeoutError,
                                  sqlite3.OperationalError, TokenRevoked))


class RecordingUseCases(LedgerBase):
    """Recording, correcting and voiding service sessions."""

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None,
                 check_keks: bool = True):
        super().__init__(settings, env, check_keks)
        # Concurrent single-session writes (the API's POST /v1/service-sessions) share a
        # transaction per caller identity and grant version: see ledger/grouping.py. The
        # batch is saved by whichever caller's thread leads it, so the grant each caller
        # relies on (guards.py) goes with its record, not with the leader's thread.
        self._sessions_together: GroupCommit[tuple[Origin, Grant | None], SessionRecord,
                                             tuple[RecordOutcome, int]]
        self._sessions_together = GroupCommit(self._record_grouped, alone_after=_not_the_store)

    def _record_grouped(self, caller: tuple[Origin, Grant | None],
                        records: Sequence[SessionRecord]) -> list[tuple[RecordOutcome, int]]:
        origin, grant = caller
        with relying_on_grant(grant):
            result = self.record_sessions(origin, records)
        positions = self._recorded_at(result)
        return [(o, positions.get(o.session_id or "", result.position)) for o in result.outcomes]

    def _recorded_at(self, result: BatchResult) -> dict[str, int]:
        """The position each session named by a batch's outcomes stands at: a new session's
        from its save; for a record sent again, that of the session's last event, as a
        correction that changes nothing answers. The answer's minutes are the session's as
        it stands (after a correction, 0 after a void), so a read with that `min_position`
        sees those minutes, not the ones the first answer gave."""
        sent_again = {o.session_id for o in result.outcomes
                      if o.session_id is not None and o.session_id not in result.recorded}
        if not sent_again:
            return result.recorded
        stored = self._positions(sent_again)
        return {**result.recorded,
                **{session_id: versions[max(versions)] for session_id, versions in stored.items()}}

    def record_sessions(self, origin: Origin, records: Sequence[SessionRecord]) -> BatchResult:
        """Record many sessions in one transaction; each record is accepted, duplicate or rejected.

        Volunteers and activities are loaded once per batch. A bad record is rejected on its own
        and never blocks the others. If another writer wins a race on any aggregate of the batch,
        the batch is checked again from the store, record by record.
        """
        require_role(origin.actor, Role.recorder)
        thorough = len(records) == 1
        staged: dict[str, datetime] = {}

        def attempt() -> BatchResult:
            nonlocal thorough
            batch = _Batch(self, origin, thorough, staged)
            thorough = True  # a retry re-checks every source record id against the store
            batch.prefetch(records)
            outcomes = [batch.record(i, rec) for i, rec in enumerate(records)]
            staged.update((i, s.created_on) for i, s in batch.created.items())
            recordings = (self._save_recorded(*batch.touched.values(), *batch.created.values(),
                                              guard=WriteGuard(unchanged=batch.consulted))
                          if batch.created else [])
            recorded = {e.originator_id: position for e, position in recordings
                        if e.originator_id in batch.created}
            position = max((position for _, position in recordings), default=0) or self.head()
            self._give_back([*batch.volunteers.values(), *batch.activities.values(),
                             *batch.units.values()])
            return BatchResult(outcomes, position, recorded)

        return self._retrying(attempt)

    def record_session(self, origin: Origin, record: SessionRecord) -> SessionWritten:
        """Record one session; the same source record again returns the existing session.

        Callers writing at the same moment share one transaction (each gets its own answer).
        """
        outcome, position = self._sessions_together.submit((origin, current_grant()), record)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.session_id is not None and outcome.minutes is not None
        return SessionWritten(outcome.session_id, outcome.minutes, position,
                              created=outcome.status == "accepted")

    def get_session(self, session_id: str) -> ServiceSession:
        """A service session by id (404 when unknown)."""
        return self._find(ServiceSession, session_id, "service session")

    def correct_session(self, origin: Origin, session_id: str, started_at: datetime,
                        ended_at: datetime, reason: str,
                        expected_version: int | None = None) -> SessionWritten:
        """Replace a session's served time, with a reason; the old time stays in the history.

        The new time obeys the rules of a new session at that time (the activity's window,
        its units' closing dates, the volunteer's registration, no overlap). A correction to
        the time the session already has writes nothing and answers the session as it stands,
        with the position of its last event (also when sent again after it took effect).
        With `expected_version`, a session at another version is refused (VersionMismatch);
        a session another request changed while this one was being written is refused too
        (ConcurrentChange), not overwritten with times chosen before that change.
        """
        require_role(origin.actor, Role.recorder)
        seen: list[int] = []

        def attempt() -> SessionWritten:
            session = self.get_session(session_id)
            require_unit(origin.actor, session.organiser_unit_id, "sessions at activities")
            checks, why = correction_checks(started_at, ended_at, reason, now())
            checks.raise_found()
            assert why is not None
            session._ensure_live()
            if session.has_times(started_at, ended_at):
                return SessionWritten(session.id, session.minutes,
                                      self._last_position(session), created=False)
            check_version(session, "session", expected_version, seen)
            activity = self.get_activity_for(session)
            activity.ensure_covers(started_at, ended_at, self.margin, allow_cancelled=True)
            day = service_date(started_at).isoformat()
            consulted: dict[str, int] = {}  # the units checked open: still so when saved

            def unit_of(unit_id: str) -> Unit:
                unit = self._find(Unit, unit_id, "unit")
                consulted[unit.id] = unit.version
                return unit

            check_units_open(activity, unit_of, day)
            volunteer = self._borrow(Volunteer, session.volunteer_id, "volunteer")
            check_member_unit_open(volunteer, unit_of, day)
            volunteer.rebook(session.id, started_at, ended_at, origin.meta())
            session.correct(started_at, ended_at, why, origin.meta())
            position = self._save(volunteer, session, guard=WriteGuard(unchanged=consulted))
            self._give_back([volunteer])
            return SessionWritten(session.id, session.minutes, position, created=False)

        return self._retrying(attempt)

    def void_session(self, origin: Origin, session_id: str, reason: str,
                     expected_version: int | None = None) -> SessionWritten:
        """Take a session off the record, with a reason; it stays in the history.

        `expected_version` and a change made meanwhile by another request are refused as in
        `correct_session`."""
        require_role(origin.actor, Role.recorder)
        seen: list[int] = []

        def attempt() -> SessionWritten:
            session = self.get_session(session_id)
            require_unit(origin.actor, session.organiser_unit_id, "sessions at activities")
            why = check_reason(reason)
            session._ensure_live()
            check_version(session, "session", expected_version, seen)
            session.void(why, origin.meta())
            volunteer = self._borrow(Volunteer, session.volunteer_id, "volunteer")
            volunteer.release(session.id, origin.meta())
            # Saved in the order the events were made, so positions agree with recorded times.
            recordings = self._save_recorded(session, volunteer)
            self._give_back([volunteer])
            # The void's own event, as a correction and a resend answer theirs (the
            # volunteer's calendar event after it is bookkeeping no view reads).
            position = max(int(position) for e, position in recordings
                           if e.originator_id == session.id)
            return SessionWritten(session.id, 0, position, created=False)

        return self._retrying(attempt)

    def get_activity_for(self, session: ServiceSession) -> Activity:
        return self._find(Activity, session.activity_id, "activity")


__all__ = ["BatchResult", "RecordingUseCases", "SessionWritten", "Written"]
