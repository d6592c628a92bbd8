"""A small pure-Python model of the ledger's write rules, for the state-machine test.

It knows only what the rules need: open and closed units, volunteers with their memberships
over time, activity windows, and sessions with their original record. Each command answers
either what the ledger should return or the `LedgerError` class it should raise, checking the
rules in the ledger's order (the record's own times and source record id, then the activity's
window, then the volunteer), and several fields refused together as InvalidFields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from ledger.calendar import DISTRICT_TZ
from ledger.errors import (
    AlreadyMember,
    ClosedReference,
    Conflict,
    DuplicateRecordConflict,
    InvalidField,
    InvalidFields,
    LedgerError,
    OverlappingSession,
    SessionVoided,
)
from ledger.sessions import session_id_for

Expected = type[LedgerError] | str | None


@dataclass
class ModelVolunteer:
    registered_on: date
    memberships: dict[date, str]
    deregistered_on: date | None = None

    @property
    def active(self) -> bool:
        return self.deregistered_on is None

    def deregistered_by(self, start: datetime) -> bool:
        """Whether a session starting then falls on or after the deregistration date."""
        day = start.astimezone(DISTRICT_TZ).date()
        return self.deregistered_on is not None and day >= self.deregistered_on

    def unit_on(self, day: date) -> str:
        unit = self.memberships[min(self.memberships)]
        for effective_on in sorted(self.memberships):
            if effective_on <= day:
                unit = self.memberships[effective_on]
        return unit


@dataclass
class ModelSession:
    volunteer_id: str
    activity_id: str
    source_record_id: str
    started_at: datetime
    ended_at: datetime
    original: tuple[float, float]
    live: bool = True

    @property
    def minutes(self) -> int:
        return int((self.ended_at - self.started_at).total_seconds() // 60)


@dataclass
class Model:
    closed_units: set[str] = field(default_factory=set)
    volunteers: dict[str, ModelVolunteer] = field(default_factory=dict)
    windows: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    sessions: dict[str, ModelSession] = field(default_factory=dict)

    # -- queries ----------------------------------------------------------------------------

    def calendar(self, volunteer_id: str) -> dict[str, list[object]]:
        """The volunteer's calendar as the aggregate keeps it: id -> [start, end, live]."""
        return {sid: [s.started_at.timestamp(), s.ended_at.timestamp(), s.live]
                for sid, s in self.sessions.items() if s.volunteer_id == volunteer_id}

    def minutes(self, volunteer_id: str) -> int:
        return sum(s.minutes for s in self.sessions.values()
                   if s.volunteer_id == volunteer_id and s.live)

    def _overlaps(self, volunteer_id: str, start: datetime, end: datetime, ignore: str) -> bool:
        return any(s.live and sid != ignore and s.started_at < end and start < s.ended_at
                   for sid, s in self.sessions.items() if s.volunteer_id == volunteer_id)

    def _outside(self, activity_id: str, start: datetime, end: datetime) -> Expected:
        """InvalidField for a session past one end of its activity, InvalidFields past both."""
        opens, closes = self.windows[activity_id]
        return _refused(start < opens, end > closes)

    # -- commands: each returns the expected result or error class, and applies success ------

    def register_volunteer(self, unit_id: str) -> Expected:
        return ClosedReference if unit_id in self.closed_units else None

    def add_volunteer(self, volunteer_id: str, unit_id: str, registered_on: date) -> None:
        self.volunteers[volunteer_id] = ModelVolunteer(registered_on, {registered_on: unit_id})

    def plan_activity(self, unit_id: str, window: tuple[datetime, datetime],
                      closed_on: date) -> Expected:
        """A closed unit may still have an activity planned that ended before it closed."""
        ends = window[1].astimezone(DISTRICT_TZ).date()
        return ClosedReference if unit_id in self.closed_units and ends >= closed_on else None

    def add_activity(self, activity_id: str, window: tuple[datetime, datetime]) -> None:
        self.windows[activity_id] = window

    def close_unit(self, unit_id: str) -> Expected:
        if unit_id in self.closed_units:
            return ClosedReference
        self.closed_units.add(unit_id)
        return None

    def record(self, volunteer_id: str, activity_id: str, start: datetime, end: datetime,
               source_record_id: str) -> Expected:
        """The session id (accepted or duplicate) or the error class."""
        if _bad_times(start, end):
            return InvalidField
        session_id = session_id_for(source_record_id)
        prior = self.sessions.get(session_id)
        if prior is not None:
            same = (prior.volunteer_id, prior.activity_id, prior.original) == (
                volunteer_id, activity_id, (start.timestamp(), end.timestamp()))
            return session_id if same else DuplicateRecordConflict
        if outside := self._outside(activity_id, start, end):
            return outside
        if self.volunteers[volunteer_id].deregistered_by(start):
            return ClosedReference
        if self._overlaps(volunteer_id, start, end, ignore=session_id):
            return OverlappingSession
        self.sessions[session_id] = ModelSession(volunteer_id, activity_id, source_record_id,
                                                 start, end, (start.timestamp(), end.timestamp()))
        return session_id

    def correct(self, session_id: str, start: datetime, end: datetime, reason: str) -> Expected:
        session = self.sessions[session_id]
        if refused := _refused(_bad_times(start, end), not reason.strip()):
            return refused  # the times and the reason are each named
        if not session.live:
            return SessionVoided
        if outside := self._outside(session.activity_id, start, end):
            return outside
        if self.volunteers[session.volunteer_id].deregistered_by(start):
            return ClosedReference
        if self._overlaps(session.volunteer_id, start, end, ignore=session_id):
            return OverlappingSession
        session.started_at, session.ended_at = start, end
        return None

    def void(self, session_id: str, reason: str) -> Expected:
        session = self.sessions[session_id]
        if not reason.strip():
            return InvalidField
        if not session.live:
            return SessionVoided
        session.live = False
        return None

    def transfer(self, volunteer_id: str, unit_id: str, effective_on: date) -> Expected:
        volunteer = self.volunteers[volunteer_id]
        if unit_id in self.closed_units or not volunteer.active:
            return ClosedReference
        if effective_on < volunteer.registered_on:
            return InvalidField
        if volunteer.unit_on(effective_on) == unit_id:
            return AlreadyMember
        volunteer.memberships[effective_on] = unit_id
        return None

    def deregister(self, volunteer_id: str, deregistered_on: date) -> Expected:
        volunteer = self.volunteers[volunteer_id]
        if not volunteer.active:
            return ClosedReference
        if any(s.live and s.volunteer_id == volunteer_id
               and s.started_at.astimezone(DISTRICT_TZ).date() >= deregistered_on
               for s in self.sessions.values()):
            return Conflict  # the registration ends after the service on record
        volunteer.deregistered_on = deregistered_on
        return None


def _refused(*fields: bool) -> Expected:
    """The error class of a request whose fields each break a rule or not: none, one, several."""
    count = sum(fields)
    return None if count == 0 else InvalidField if count == 1 else InvalidFields


def _bad_times(start: datetime, end: datetime) -> bool:
    """A session's times break a rule of their own: under a whole minute, or over 24 hours."""
    return not 60 <= (end - start).total_seconds() <= 24 * 3600
