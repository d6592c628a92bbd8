"""Volunteers: registration, membership over time, trainings, insurance and their time calendar."""

from __future__ import annotations

from bisect import bisect_left, insort
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from eventsourcing.domain import event

from ledger.aggregate import LedgerAggregate
from ledger.calendar import check_year, service_date
from ledger.errors import (
    AlreadyMember,
    ClosedReference,
    Conflict,
    FieldChecks,
    InvalidField,
    OverlappingSession,
)
from ledger.ids import new_id
from ledger.text import blank, check_reason

PERSONAL_FIELDS = ("birth_date", "gender", "political_status", "phone", "id_number", "skills")
# The personal fields an update may clear (a change to None): contact and identity data, which
# a volunteer may withdraw. Others are corrected, not removed (skills are cleared by an empty
# list).
CLEARABLE_FIELDS = ("phone", "id_number")
# What makes two training completions of one volunteer the same completion (hours aside).
TRAINING_KEY = ("level", "form", "audience", "title", "completed_on")


# Live sessions as (start, end, session id), sorted, and the longest one's length in seconds.
Calendar = tuple[list[tuple[float, float, str]], float]


def new_volunteer_id() -> str:
    return new_id("vol")


def check_cover_year(year: int, today: date) -> int:
    """A year an insurance cover may be recorded for (InvalidField naming `year`): from
    MIN_YEAR (as an award's) to the year after `today` (district time). A cover is for one
    year and may be bought ahead for the next; a year further ahead is a typo (bb39 F11:
    2099 was taken, where an award for it is refused)."""
    check_year(year)
    if year > today.year + 1:
        raise InvalidField(f"year {year} is more than a year ahead: a cover is recorded for "
                           f"{today.year + 1} at the latest", "year")
    return year


class Volunteer(LedgerAggregate):
    """A registered volunteer; also the calendar that keeps their sessions from overlapping."""

    id: str  # chosen by the ledger, see ledger.aggregate

    # The live sessions sorted by start, with the longest one's length, for overlap checks that
    # look at a few neighbours instead of every session (bb23 F4: 2.7 ms a new session at
    # 20,000). Built on the first check, kept by the session events, never stored.
    derived: ClassVar[frozenset[str]] = frozenset({"_calendar"})

    @event("Registered")
    def __init__(
        self,
        name: str,
        home_unit_id: str,
        registered_on: str,
        volunteer_number: str,
        personal: dict[str, Any],
        actor: dict[str, Any],
        source: str,
    ) -> None:
        self.name = name
        self.home_unit_id = home_unit_id
        self.registered_on = registered_on
        self.volunteer_number = volunteer_number
        self.personal = dict(personal)
        # [effective_on, unit_id] pairs, sorted by date: the unit on any day.
        self.memberships: list[list[str]] = [[registered_on, home_unit_id]]
        # session id -> [start epoch seconds, end epoch seconds, live flag]
        self.sessions: dict[str, list[Any]] = {}
        self.trainings: list[dict[str, Any]] = []
        self.insured_years: list[int] = []
        self.deregistered_on: str | None = None

    # -- queries ----------------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self.deregistered_on is None

    def unit_on(self, day: date | str) -> str:
        """The unit the volunteer belonged to on a day (their home unit before registration)."""
        iso = day if isinstance(day, str) else day.isoformat()
        unit = self.memberships[0][1]
        for effective_on, unit_id in self.memberships:
            if effective_on > iso:
                break
            unit = unit_id
        return unit

    @property
    def current_unit_id(self) -> str:
        return self.memberships[-1][1]

    def recorded_training(self, training: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The completion already recorded of the same course (level, form, audience, title)
        on the same day, and its place among the volunteer's trainings; None if there is none."""
        key = [training[k] for k in TRAINING_KEY]
        for index, known in enumerate(self.trainings):
            if [known[k] for k in TRAINING_KEY] == key:
                return index, known
        return None

    def overlapping(self, started_at: datetime, ended_at: datetime, ignore: str = "") -> str | None:
        """The id of a live session that overlaps the interval (touching is not overlapping)."""
        start, end = started_at.timestamp(), ended_at.timestamp()
        calendar, longest = self._live_calendar()
        # A session that ends after `start` began less than the longest session's length
        # before it: only those from there up to `end` can overlap (read in place: a slice
        # would copy the rest of the calendar for every check).
        for at in range(bisect_left(calendar, (start - longest,)), len(calendar)):
            s, e, session_id = calendar[at]
            if s >= end:
                break
            if start < e and session_id != ignore:
                return session_id
        return None

    def _live_calendar(self) -> Calendar:
        calendar: Calendar | None = self.__dict__.get("_calendar")
        if calendar is None:
            live = sorted((s, e, i) for i, (s, e, on) in self.sessions.items() if on)
            calendar = live, max((e - s for s, e, _ in live), default=0.0)
            self._calendar = calendar
        return calendar

    def _calendar_changes(self, session_id: str, times: list[Any] | None) -> None:
        """Set a session's [start, end, live] times, or release it (None), keeping the
        calendar, if built, in step."""
        old = self.sessions.get(session_id)
        was_live = old is not None and old[2]
        if times is None:
            assert old is not None
            old[2] = False
        else:
            self.sessions[session_id] = times
        calendar: Calendar | None = self.__dict__.get("_calendar")
        if calendar is None:
            return
        live, longest = calendar
        if was_live:
            assert old is not None
            entry = (old[0], old[1], session_id)
            at = bisect_left(live, entry)
            if at < len(live) and live[at] == entry:
                del live[at]
        if times is not None:
            insort(live, (times[0], times[1], session_id))
            self._calendar = live, max(longest, times[1] - times[0])

    # -- commands ---------------------------------------------------------------------------

    def book(self, session_id: str, started_at: datetime, ended_at: datetime,
             meta: dict[str, Any]) -> None:
        """Reserve the volunteer's time for a new session."""
        self._ensure_registered_on(started_at)
        self._ensure_free(started_at, ended_at, ignore=session_id)
        # The event of `_booked`, triggered without calling it: the decorated method matches
        # its arguments to its parameters twice before it makes the event (a third of booking
        # a session, which an import does for every record). The event is the same one, and
        # `_booked` still applies it.
        self.trigger_event(_SESSION_BOOKED, session_id=session_id, started_at=started_at,
                           ended_at=ended_at, **meta)

    def rebook(self, session_id: str, started_at: datetime, ended_at: datetime,
               meta: dict[str, Any]) -> None:
        """Move a session's reserved time after a correction (by the rule of a new session)."""
        self._ensure_registered_on(started_at)
        self._ensure_free(started_at, ended_at, ignore=session_id)
        self._rebooked(session_id=session_id, started_at=started_at, ended_at=ended_at, **meta)

    def release(self, session_id: str, meta: dict[str, Any]) -> None:
        """Free the time of a voided session."""
        self._released(session_id=session_id, **meta)

    def _ensure_registered_on(self, started_at: datetime) -> None:
        """The one rule of a session's service date, for new records and corrections alike:
        on or after `registered_on` (before it there is no volunteer to credit, nor a unit for
        the `members` basis: 422) and before `deregistered_on`, the day the registration ended
        (409, as any closed reference). Service done before the deregistration may be recorded
        late: the record rules ask for truthful records, not only prompt ones."""
        day = service_date(started_at).isoformat()
        if day < self.registered_on:
            raise InvalidField(f"started_at falls on {day}, before the volunteer registered "
                               f"({self.registered_on})", "started_at")
        if self.deregistered_on is not None and day >= self.deregistered_on:
            raise ClosedReference(
                f"started_at falls on {day}, but volunteer {self.id} was deregistered on "
                f"{self.deregistered_on}: only service before that date may be recorded",
                "started_at")

    def transfer(self, to_unit_id: str, effective_on: date, meta: dict[str, Any]) -> None:
        """Move the volunteer to another unit from a date on."""
        self._ensure_active()
        iso = effective_on.isoformat()
        if iso < self.registered_on:
            raise InvalidField(
                f"effective_on {iso} is before the volunteer registered ({self.registered_on})",
                "effective_on",
            )
        if self.unit_on(effective_on) == to_unit_id:
            raise AlreadyMember(
                f"the volunteer already belongs to {to_unit_id} on {iso}", "to_unit_id"
            )
        self._transferred(
            from_unit_id=self.unit_on(effective_on), to_unit_id=to_unit_id,
            effective_on=iso, **meta,
        )

    def update_personal(self, changes: dict[str, Any], meta: dict[str, Any]) -> None:
        """Correct or complete the volunteer's personal data; once deregistered, only withdraw
        a phone or id number (bb21 F1: one who has left is the likeliest to ask, and PIPL
        art. 47 gives them the right whether or not they are still registered)."""
        if not changes:
            return  # nothing differs from the record: nothing to refuse either
        if not all(k in CLEARABLE_FIELDS and v is None for k, v in changes.items()):
            self._ensure_active(": since then only a phone or id number may be withdrawn "
                                "(null)")
        unknown = sorted(set(changes) - {"name", *PERSONAL_FIELDS})
        if unknown:
            raise InvalidField(f"{unknown[0]} is not a personal field", unknown[0])
        if "name" in changes and blank(str(changes["name"])):
            raise InvalidField("name must not be empty", "name")
        self._personal_updated(changes=changes, **meta)

    def deregister(self, deregistered_on: date, reason: str, meta: dict[str, Any]) -> None:
        """End the registration; recorded hours stay on the record.

        The registration ends after the last service and training on record: the date rule
        of sessions and trainings (before `deregistered_on`, never on or after it) holds for
        what was recorded before the deregistration too (409 naming the record otherwise).
        """
        self._ensure_active()
        checks = FieldChecks(("deregistered_on", "reason"))
        why = checks.run(check_reason, reason)
        day = deregistered_on.isoformat()
        if day < self.registered_on:
            checks.add(InvalidField(
                f"deregistered_on is before the volunteer registered ({self.registered_on})",
                "deregistered_on"))
        checks.raise_found()
        assert why is not None
        later = self._recorded_on_or_after(day)
        if later is not None:
            raise Conflict(
                f"deregistered_on {day} is not after the volunteer's {later}: a registration "
                "ends after the service and training on record (correct or void that session "
                "first, or choose a later date)", "deregistered_on")
        self._deregistered(deregistered_on=day, reason=why, **meta)

    def _recorded_on_or_after(self, day: str) -> str | None:
        """A live session or a training of the volunteer on or after a day, described."""
        for session_id, (start, _end, live) in self.sessions.items():
            served = service_date(datetime.fromtimestamp(start, UTC)).isoformat()
            if live and served >= day:
                return f"session {session_id} served on {served}"
        for training in self.trainings:
            if training["completed_on"] >= day:
                return f"training {training['id']} completed on {training['completed_on']}"
        return None

    def complete_training(self, training: dict[str, Any], meta: dict[str, Any]) -> None:
        """Record a completed training (hours are kept apart from service hours), completed
        while registered: on or after `registered_on` and before any `deregistered_on`, also
        when recorded after the deregistration (a truthful late record)."""
        if training["completed_on"] < self.registered_on:
            raise InvalidField(
                f"completed_on {training['completed_on']} is before the volunteer registered "
                f"({self.registered_on})", "completed_on",
            )
        if self.deregistered_on is not None and training["completed_on"] >= self.deregistered_on:
            raise ClosedReference(
                f"completed_on {training['completed_on']} is not before volunteer {self.id} "
                f"was deregistered ({self.deregistered_on}): only training completed before "
                "that date may be recorded", "completed_on")
        self._trained(training=training, **meta)

    def insure(self, year: int, policy_ref: str, insurer: str, meta: dict[str, Any]) -> None:
        """Record personal accident insurance cover for a year (plan measure 5)."""
        self._ensure_active()
        if year in self.insured_years:
            raise InvalidField(f"the volunteer is already insured for {year}", "year")
        self._insured(year=year, policy_ref=policy_ref, insurer=insurer, **meta)

    def _ensure_active(self, note: str = "") -> None:
        if not self.is_active:
            raise ClosedReference(
                f"volunteer {self.id} was deregistered on {self.deregistered_on}{note}",
                "volunteer_id")

    def _ensure_free(self, started_at: datetime, ended_at: datetime, ignore: str) -> None:
        other = self.overlapping(started_at, ended_at, ignore=ignore)
        if other is not None:
            raise OverlappingSession(
                f"volunteer {self.id} already has session {other} during that time",
                "started_at",
            )

    # -- events -----------------------------------------------------------------------------

    @event("SessionBooked")
    def _booked(self, session_id: str, started_at: datetime, ended_at: datetime,
                actor: dict[str, Any], source: str) -> None:
        self._calendar_changes(session_id, [started_at.timestamp(), ended_at.timestamp(), True])

    @event("SessionRebooked")
    def _rebooked(self, session_id: str, started_at: datetime, ended_at: datetime,
                  actor: dict[str, Any], source: str) -> None:
        self._calendar_changes(session_id, [started_at.timestamp(), ended_at.timestamp(), True])

    @event("SessionReleased")
    def _released(self, session_id: str, actor: dict[str, Any], source: str) -> None:
        self._calendar_changes(session_id, None)

    @event("Transferred")
    def _transferred(self, from_unit_id: str, to_unit_id: str, effective_on: str,
                     actor: dict[str, Any], source: str) -> None:
        self.memberships = [m for m in self.memberships if m[0] != effective_on]
        insort(self.memberships, [effective_on, to_unit_id])

    @event("PersonalDataUpdated")
    def _personal_updated(self, changes: dict[str, Any], actor: dict[str, Any],
                          source: str) -> None:
        for key, value in changes.items():
            if key == "name":
                self.name = value
            elif value is None:  # cleared (events stored before clearing existed hold no None)
                self.personal.pop(key, None)
            else:
                self.personal[key] = value

    @event("Deregistered")
    def _deregistered(self, deregistered_on: str, reason: str, actor: dict[str, Any],
                      source: str) -> None:
        self.deregistered_on = deregistered_on

    @event("TrainingCompleted")
    def _trained(self, training: dict[str, Any], actor: dict[str, Any], source: str) -> None:
        self.trainings.append(training)

    @event("Insured")
    def _insured(self, year: int, policy_ref: str, insurer: str, actor: dict[str, Any],
                 source: str) -> None:
        self.insured_years.append(year)


_SESSION_BOOKED: type[Any] = Volunteer.SessionBooked  # type: ignore[attr-defined]


class VolunteerNumbers(LedgerAggregate):
    """Issues the district's sequential volunteer numbers; its version orders concurrent issues."""

    id: str  # chosen by the ledger, see ledger.aggregate


    ID = "volunteer-numbers"

    @event("Started")
    def __init__(self, prefix: str, actor: dict[str, Any], source: str) -> None:
        self.prefix = prefix
        self.last = 0

    def issue(self, volunteer_id: str, meta: dict[str, Any]) -> str:
        """The next number, for a volunteer being registered."""
        self._issued(number=self.last + 1, volunteer_id=volunteer_id, **meta)
        return f"{self.prefix}{self.last:07d}"

    @event("Issued")
    def _issued(self, number: int, volunteer_id: str, actor: dict[str, Any],
                source: str) -> None:
        self.last = number
