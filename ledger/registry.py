"""Use cases that register who and what: units, volunteers, activities, trainings, insurance."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger.access import require_role, require_unit
from ledger.activities import Activity, new_activity_id
from ledger.aggregate import event_topic
from ledger.base import (
    LedgerBase,
    Written,
    check_program,
    check_version,
    open_unit,
)
from ledger.calendar import (
    check_day,
    check_instant,
    district_today,
    service_date,
)
from ledger.catalogue import (
    CivilizedLevel,
    Gender,
    PoliticalStatus,
    Role,
    TrainingAudience,
    TrainingForm,
    TrainingLevel,
    UnitKind,
    member,
)
from ledger.errors import (
    CreditedAfterClosure,
    DuplicateRecordConflict,
    FieldChecks,
    Forbidden,
    InvalidField,
    InvalidRequest,
    NotFound,
    VersionMismatch,
)
from ledger.guards import WriteGuard
from ledger.privacy import id_birth
from ledger.provenance import Origin
from ledger.sealing import KeyChanges
from ledger.sessions import ServiceSession
from ledger.text import check_reason, check_text, trimmed
from ledger.units import Unit, check_parent, new_unit_id
from ledger.volunteers import (
    CLEARABLE_FIELDS,
    PERSONAL_FIELDS,
    Volunteer,
    VolunteerNumbers,
    check_cover_year,
    new_volunteer_id,
)

VOLUNTEER_NUMBER_PREFIX = "MLV"
# Every registration takes the next number from the one `VolunteerNumbers` aggregate, so
# registrations made at the same moment (30 at once across four server processes) race for
# it, and all but one must read it again. They are independent of each other, so each keeps
# trying, after a short random pause that grows with each lost race so that the racers spread
# out, rather than answer 409 after a few tries as a conflict over one record would.
NUMBER_ATTEMPTS = 40
NUMBER_PAUSE_SECONDS = 0.002  # the longest first pause; it doubles with each attempt
MAX_SKILL = 100  # characters of one skill (as the API's Skill)
# The fields of each request in the order its body gives them (API.md), which is the order
# its refused fields are named in.
VOLUNTEER_ORDER = ("name", "home_unit_id", "registered_on", *PERSONAL_FIELDS)
VOLUNTEER_REGISTERED = event_topic(Volunteer, "Registered")


@dataclass(frozen=True)
class TrainingWritten(Written):
    """A training completion's write; `created` is False when it repeated one already
    recorded, and nothing was written."""

    created: bool = True


@dataclass(frozen=True)
class VolunteerApplication:
    """One volunteer to register: name, home unit, registration date and personal data."""

    name: str
    home_unit_id: str
    registered_on: date
    personal: dict[str, Any] = field(default_factory=dict)


def _enum(cls: Any, name: str, value: Any) -> str:
    """The value of the member a request's value names (`catalogue.member`)."""
    return str(member(cls, name, value).value)


class RegistryUseCases(LedgerBase):
    """Registration of units, volunteers and activities, and the facts that follow them."""

    # -- units ------------------------------------------------------------------------------

    @staticmethod
    def unit_fields(name: str, kind: str, parent_id: str | None = None,
                    civilized_level: str | None = None, refused: Iterable[str] = ()
                    ) -> dict[str, Any]:
        """What a unit's registration records of the request, checked on its own (422,
        naming every field refused; `refused`: as for `volunteer_fields`)."""
        checks = FieldChecks(("name", "kind", "parent_id", "civilized_level"), refused)
        fields = {"name": checks.run(check_text, "name", name),
                  "kind": checks.run(_enum, UnitKind, "kind", kind),
                  "parent_id": parent_id or None,
                  "civilized_level": (checks.run(_enum, CivilizedLevel, "civilized_level",
                                                 civilized_level) if civilized_level else None)}
        checks.raise_found()
        return fields

    def register_unit(self, origin: Origin, name: str, kind: str, parent_id: str | None = None,
                      civilized_level: str | None = None) -> Written:
        """Register a unit under an optional parent."""
        require_role(origin.actor)
        fields = self.unit_fields(name, kind, parent_id, civilized_level)
        unit_id = new_unit_id()  # once: a keyed request draws the same id on every attempt

        def attempt() -> Written:
            relied: dict[str, int] = {}  # the parent, open: still so when stored (guards.py)
            if fields["parent_id"]:
                parent = self._refer(Unit, fields["parent_id"], "parent_id", "unit")
                open_unit(parent, "parent_id")
                check_parent(fields["kind"], parent)
                relied[parent.id] = parent.version
            unit = Unit(**fields, id=unit_id, **origin.meta())  # type: ignore[call-arg]
            return Written(unit.id, self._save(unit, guard=WriteGuard(unchanged=relied)))

        return self._retrying(attempt)

    def rename_unit(self, origin: Origin, unit_id: str, name: str) -> Written:
        """Give a unit a new name."""
        return self.change_unit(origin, unit_id, name=name)

    def move_unit(self, origin: Origin, unit_id: str, parent_id: str | None) -> Written:
        """Place a unit under another parent unit (None: at the top)."""
        return self.change_unit(origin, unit_id, parent_id=parent_id, move=True)

    def change_unit(self, origin: Origin, unit_id: str, name: str | None = None,
                    parent_id: str | None = None, move: bool = False,
                    expected_version: int | None = None) -> Written:
        """Rename a unit and/or (`move`) place it under another parent, in one write: both
        changes, or neither if one is refused. With `expected_version`, a unit at another
        version is refused (VersionMismatch); one changed by another request while this one
        was written, too (ConcurrentChange)."""
        require_role(origin.actor)
        if name is None and not move:
            raise InvalidRequest("no field to change was given: name or parent_id", "body")
        seen: list[int] = []

        def attempt() -> Written:
            unit = self.get_unit(unit_id)
            check_version(unit, "unit", expected_version, seen)
            unit._ensure_open()
            # Only what differs is recorded (the same name again writes nothing).
            if name is not None and self.unit_change_fields(name) != unit.name:
                unit.rename(name, origin.meta())
            if move and (parent_id or None) != unit.parent_id:
                self._check_parent_of(unit, parent_id)
                unit.move(parent_id or None, origin.meta())
            if not unit.pending_events:
                return Written(unit.id, self._last_position(unit))
            return Written(unit.id, self._save(unit))

        return self._retrying(attempt)

    @staticmethod
    def unit_change_fields(name: str | None, refused: Iterable[str] = ()) -> str | None:
        """A unit change's new name (None: kept), checked on its own (422; `refused`: as for
        `volunteer_fields`); its parent is looked up."""
        checks = FieldChecks(("name", "parent_id"), refused)
        text = None if name is None else checks.run(check_text, "name", name)
        checks.raise_found()
        return text

    def _check_parent_of(self, unit: Unit, parent_id: str | None) -> None:
        if not parent_id:
            return
        parent = self._refer(Unit, parent_id, "parent_id", "unit")
        open_unit(parent, "parent_id")
        if self._is_descendant(parent_id, unit.id):
            raise InvalidField("a unit cannot be placed under itself or its descendants",
                               "parent_id")
        check_parent(unit.kind, parent)

    def close_unit(self, origin: Origin, unit_id: str, closed_on: date, reason: str,
                   service: Callable[[], ServiceFacts] | None = None,
                   expected_version: int | None = None) -> Written:
        """Close a unit; nothing new may refer to it.

        Not on or before the last day it has live service credited on, organised by it or
        served by its members: `service` reads that from the views (no aggregate of the write
        side knows it: every session of the unit would contend on it), caught up with the
        ledger. What was stored after the views were read is checked again inside the
        closure's insert, where writes take turns (guards.py): a session or a transfer that
        could credit the unit from `closed_on` on makes the closure read the views again.
        With `expected_version` (If-Match), a unit at another version is refused, as a
        change is (bb20 F2: a stale tag closed the unit).
        """
        require_role(origin.actor)
        self.closure_checks(closed_on, reason).raise_found()
        day = closed_on.isoformat()
        seen: list[int] = []

        def attempt() -> Written:
            unit = self.get_unit(unit_id)
            check_version(unit, "unit", expected_version, seen)
            guard = None
            if service is not None:
                facts = service()
                if facts.last_service_on is not None and facts.last_service_on >= day:
                    raise CreditedAfterClosure(
                        f"closed_on {day} is not after {facts.last_service_on}, the last day "
                        f"unit {unit_id} has service credited on: void or correct those "
                        "sessions first, or close it later", "closed_on")
                guard = WriteGuard(after=facts.position, tail=lambda stored: _may_credit(
                    self.mapper, stored, unit_id, day, set(facts.members)))
            unit.close(day, reason, origin.meta())
            return Written(unit.id, self._save(unit, guard=guard))

        return self._retrying(attempt)

    @staticmethod
    def closure_checks(closed_on: date, reason: str, refused: Iterable[str] = ()) -> FieldChecks:
        """The rules a unit closure's own fields obey, run to the end (`refused`: as for
        `volunteer_fields`); its service is read from the views."""
        checks = FieldChecks(("closed_on", "reason"), refused)
        checks.run(check_day, "closed_on", closed_on, district_today())
        checks.run(check_reason, reason)
        return checks

    def get_unit(self, unit_id: str) -> Unit:
        """A unit by id (404 when unknown)."""
        return self._find(Unit, unit_id, "unit")

    def _is_descendant(self, candidate_id: str, ancestor_id: str) -> bool:
        seen: set[str] = set()
        current: str | None = candidate_id
        while current and current not in seen:
            if current == ancestor_id:
                return True
            seen.add(current)
            unit = self._get(Unit, current)
            current = unit.parent_id if unit else None
        return False

    # -- volunteers -------------------------------------------------------------------------

    def register_volunteer(self, origin: Origin, name: str, home_unit_id: str,
                           registered_on: date, **personal: Any) -> tuple[Written, str]:
        """Register a volunteer with their home unit; returns the write and the volunteer number."""
        written, numbers = self.register_volunteers(
            origin, [VolunteerApplication(name, home_unit_id, registered_on, personal)])
        return written[0], numbers[0]

    def volunteer_fields(self, name: str, home_unit_id: str, registered_on: date,
                         personal: dict[str, Any], refused: Iterable[str] = ()
                         ) -> dict[str, Any]:
        """What a volunteer's registration records of the request (but the number it is
        issued), checked on its own (422, naming every field refused; `refused`: fields the
        request's schema refused, held as refused)."""
        checks = FieldChecks(VOLUNTEER_ORDER, refused)
        text = checks.run(check_text, "name", name)
        checks.run(check_day, "registered_on", registered_on, district_today())
        clean = self._check_personal(personal, checks)
        _check_born_by(clean, registered_on.isoformat(), checks)
        checks.raise_found()
        return {"name": text, "home_unit_id": home_unit_id,
                "registered_on": registered_on.isoformat(), "personal": clean}

    def register_volunteers(self, origin: Origin, applications: Sequence[VolunteerApplication]
                            ) -> tuple[list[Written], list[str]]:
        """Register many volunteers in one transaction (all or none); numbers are sequential."""
        require_role(origin.actor, Role.recorder)
        checked = []
        # A batch names a few units many times: each is loaded once.
        units = self._get_many(Unit, {app.home_unit_id for app in applications})
        for app in applications:
            fields = self.volunteer_fields(app.name, app.home_unit_id, app.registered_on,
                                           app.personal)
            unit = self._refer(Unit, app.home_unit_id, "home_unit_id", "unit", among=units)
            open_unit(unit, "home_unit_id")
            require_unit(origin.actor, app.home_unit_id, "volunteers")
            checked.append((new_volunteer_id(), fields))
        relied_on: dict[str, int] = {}

        def attempt() -> tuple[list[Written], list[str]]:
            # The home units, open when checked above: still so when stored (guards.py); a
            # retry reads and checks them again.
            homes = units
            if relied_on:
                homes = self._get_many(Unit, set(units))
                for unit in homes.values():
                    open_unit(unit, "home_unit_id")
            relied_on.update({unit.id: unit.version for unit in homes.values()})
            numbers = self._get(VolunteerNumbers, VolunteerNumbers.ID)
            if numbers is None:
                numbers = VolunteerNumbers(prefix=VOLUNTEER_NUMBER_PREFIX,  # type: ignore[call-arg]
                                           id=VolunteerNumbers.ID, **origin.meta())
            volunteers, issued = [], []
            keys = KeyChanges()  # each attempt seals anew: a lost one's keys were not stored
            for volunteer_id, fields in checked:
                number = numbers.issue(volunteer_id, origin.meta())
                issued.append(number)
                volunteers.append(Volunteer(  # type: ignore[call-arg]
                    **{**fields, "personal": keys.sealed(fields["personal"])},
                    volunteer_number=number, id=volunteer_id, **origin.meta()))
            position = self._save(numbers, *volunteers, guard=WriteGuard(unchanged=relied_on),
                                  keys=keys)
            return [Written(v.id, position) for v in volunteers], issued

        return self._retrying(attempt, attempts=NUMBER_ATTEMPTS, pause=NUMBER_PAUSE_SECONDS,
                              refused="volunteer numbers were being issued to many "
                              "registrations at once; nothing was registered, please try again",
                              busy=True)

    @staticmethod
    def _check_personal(personal: dict[str, Any], checks: FieldChecks) -> dict[str, Any]:
        """The personal fields given, each checked on its own; one refused is left out, and
        `checks` keeps why."""
        clean: dict[str, Any] = {}
        for key, value in personal.items():
            if key not in PERSONAL_FIELDS:
                checks.add(InvalidField(f"{key} is not a personal field", key))
            elif value is not None:
                checked = checks.run(_personal_value, key, value, checks)
                if checks.passed(key):
                    clean[key] = checked
        return clean

    def get_volunteer(self, volunteer_id: str) -> Volunteer:
        """A volunteer by id (404 when unknown)."""
        return self._find(Volunteer, volunteer_id, "volunteer")

    def require_volunteer(self, volunteer_id: str) -> None:
        """NotFound unless a volunteer has this id; reads their first event only, not their
        record (bb27 F3: a history page loaded a 2 MB snapshot to learn that they exist)."""
        if self._loader.created_topic(volunteer_id) != VOLUNTEER_REGISTERED:
            raise NotFound(f"no volunteer with id {volunteer_id!r}")

    def personal_of(self, volunteer: Volunteer) -> dict[str, Any]:
        """A volunteer's personal data, numbers opened (ledger/sealing.py)."""
        return self._opened(volunteer.personal)

    def update_volunteer(self, origin: Origin, volunteer_id: str, changes: dict[str, Any],
                         expected_version: int | None = None) -> Written:
        """Correct or complete a volunteer's name or personal data; a change to None clears
        a field of CLEARABLE_FIELDS (the phone, the id number). At least one field must be given.
        With `expected_version` (If-Match), a volunteer at another version is refused
        (VersionMismatch; bb32 F3: a stale If-Match was ignored). Without it, a session
        recorded meanwhile (which moves the volunteer's version) does not refuse the change."""
        require_role(origin.actor, Role.recorder)
        if not changes:
            raise InvalidRequest("no field to change was given: name or a personal field ("
                                 + ", ".join(PERSONAL_FIELDS) + ")")
        checks, clean = self.volunteer_changes(changes)

        def attempt() -> Written:
            try:
                volunteer = self.get_volunteer(volunteer_id)
                require_unit(origin.actor, volunteer.current_unit_id, "volunteers")
                check_version(volunteer, "volunteer", expected_version, None)
            except (NotFound, Forbidden, VersionMismatch):
                checks.raise_found()  # what the body breaks on its own is answered first
                raise
            # The fields given are compared with the record only once the caller may see it.
            current = self.personal_of(volunteer)
            _check_born_by({**current, **clean}, volunteer.registered_on, checks,
                           given=frozenset(clean))
            checks.raise_found()
            # Only what differs is recorded; a change to what is already there writes nothing
            # and answers where the volunteer's record last changed.
            changed = {k: v for k, v in clean.items()
                       if (volunteer.name if k == "name" else current.get(k)) != v}
            # A number withdrawn or replaced is erased: its key goes with this write.
            keys = KeyChanges()
            for key in changed:
                keys.erase(volunteer.personal.get(key))
            volunteer.update_personal(keys.sealed(changed), origin.meta())
            if not changed:
                return Written(volunteer.id, self._last_position(volunteer))
            return Written(volunteer.id, self._save(volunteer, keys=keys))

        return self._retrying(attempt)

    @classmethod
    def volunteer_changes(cls, changes: dict[str, Any], refused: Iterable[str] = ()
                          ) -> tuple[FieldChecks, dict[str, Any]]:
        """A volunteer update's changes as recorded (None: cleared), each checked on its own,
        and what those checks refused, not raised yet (`refused`: as for `volunteer_fields`):
        an unknown volunteer, or one the caller may not see, is answered as such first, and
        the changes are compared with the record only once it is read."""
        checks = FieldChecks(VOLUNTEER_ORDER, refused)
        given = {k: v for k, v in changes.items() if k != "name" and v is not None}
        clean = cls._check_personal(given, checks)
        if "name" in changes:
            name = checks.run(check_text, "name", changes["name"])
            if checks.passed("name"):
                clean["name"] = name
        for key in sorted(k for k, v in changes.items() if k != "name" and v is None):
            if key not in PERSONAL_FIELDS:
                checks.add(InvalidField(f"{key} is not a personal field", key))
            elif key not in CLEARABLE_FIELDS:
                checks.add(InvalidField(f"{key} cannot be cleared (null), only corrected; "
                                        f"only {', '.join(CLEARABLE_FIELDS)} may be cleared",
                                        key))
            else:
                clean[key] = None
        return checks, clean

    def transfer_volunteer(self, origin: Origin, volunteer_id: str, to_unit_id: str,
                           effective_on: date) -> Written:
        """Move a volunteer to another unit from a date on (a later record may back-date it).

        Not ahead of time: the ledger records what happened, and a volunteer's current unit is
        the one of their latest transfer. The unit must still be open when the transfer is
        stored (a closure at the same moment makes it look again).
        """
        require_role(origin.actor, Role.recorder)
        self.transfer_checks(effective_on).raise_found()

        def attempt() -> Written:
            unit = self._refer(Unit, to_unit_id, "to_unit_id", "unit")
            open_unit(unit, "to_unit_id")
            volunteer = self.get_volunteer(volunteer_id)
            require_unit(origin.actor, volunteer.unit_on(effective_on), "volunteers")
            volunteer.transfer(to_unit_id, effective_on, origin.meta())
            return Written(volunteer.id, self._save(
                volunteer, guard=WriteGuard(unchanged={unit.id: unit.version})))

        return self._retrying(attempt)

    @staticmethod
    def transfer_checks(effective_on: date, refused: Iterable[str] = ()) -> FieldChecks:
        """The rules a transfer's own fields obey (`refused`: as for `volunteer_fields`); its
        unit is looked up, and its date compared with the volunteer's registration."""
        checks = FieldChecks(("to_unit_id", "effective_on"), refused)
        checks.run(check_day, "effective_on", effective_on, district_today())
        return checks

    def deregister_volunteer(self, origin: Origin, volunteer_id: str, deregistered_on: date,
                             reason: str) -> Written:
        """End a volunteer's registration; their recorded hours stay."""
        require_role(origin.actor, Role.recorder)
        self.deregistration_checks(deregistered_on, reason).raise_found()

        def attempt() -> Written:
            volunteer = self.get_volunteer(volunteer_id)
            require_unit(origin.actor, volunteer.current_unit_id, "volunteers")
            volunteer.deregister(deregistered_on, reason, origin.meta())
            return Written(volunteer.id, self._save(volunteer))

        return self._retrying(attempt)

    @staticmethod
    def deregistration_checks(deregistered_on: date, reason: str, refused: Iterable[str] = ()
                              ) -> FieldChecks:
        """The rules a deregistration's own fields obey, run to the end (`refused`: as for
        `volunteer_fields`); its date is compared with the record when it is read."""
        checks = FieldChecks(("deregistered_on", "reason"), refused)
        checks.run(check_day, "deregistered_on", deregistered_on, district_today())
        checks.run(check_reason, reason)
        return checks

    def complete_training(self, origin: Origin, volunteer_id: str, level: str, form: str,
                          audience: str, title: str, completed_on: date,
                          hours: float) -> TrainingWritten:
        """Record a training the volunteer completed (four levels, four forms, three audiences).

        A completion is counted once: the same one again answers the original's id and
        position and writes nothing (`created` is False).
        """
        require_role(origin.actor, Role.recorder)
        training = self.training_fields(level, form, audience, title, completed_on, hours)

        def attempt() -> TrainingWritten:
            volunteer = self._refer(Volunteer, volunteer_id, "volunteer_id", "volunteer")
            require_unit(origin.actor, volunteer.unit_on(completed_on), "volunteers")
            known = volunteer.recorded_training(training)
            if known is not None:
                return self._training_again(volunteer, *known, training)
            training_id = f"{volunteer.id}:training:{len(volunteer.trainings) + 1}"
            volunteer.complete_training({"id": training_id, **training}, origin.meta())
            return TrainingWritten(training_id, self._save(volunteer))

        return self._retrying(attempt)

    def _training_again(self, volunteer: Volunteer, index: int, known: dict[str, Any],
                        training: dict[str, Any]) -> TrainingWritten:
        """A completion of a course the volunteer already completed that day: the same one
        again (same hours, in whole minutes) answers where the original was stored; other
        hours contradict the record (409 naming it)."""
        if known["minutes"] != training["minutes"]:
            raise DuplicateRecordConflict(
                f"hours {training['minutes'] / 60:g} differ from the {known['minutes'] / 60:g} "
                f"of training {known['id']}, already recorded for volunteer {volunteer.id} for "
                f"the same course ({known['level']}, {known['form']}, {known['audience']}, "
                f"{known['title']!r}) completed on {known['completed_on']}: a course completed "
                f"on one day is recorded once", "hours")
        stored = self._positions([volunteer.id],
                                 event_topic(Volunteer, "TrainingCompleted"))[volunteer.id]
        # The volunteer's trainings are its TrainingCompleted events, in order.
        position = stored[sorted(stored)[index]]
        return TrainingWritten(known["id"], position, created=False)

    @classmethod
    def training_fields(cls, level: str, form: str, audience: str, title: str,
                        completed_on: date, hours: float, refused: Iterable[str] = ()
                        ) -> dict[str, Any]:
        """What a training completion records of the request (but its volunteer), checked on
        its own (422, naming every field refused; `refused`: as for `volunteer_fields`)."""
        checks = FieldChecks(("volunteer_id", "level", "form", "audience", "title",
                              "completed_on", "hours"), refused)
        training = {
            "level": checks.run(_enum, TrainingLevel, "level", level),
            "form": checks.run(_enum, TrainingForm, "form", form),
            "audience": checks.run(_enum, TrainingAudience, "audience", audience),
            "title": checks.run(check_text, "title", title),
            "completed_on": completed_on.isoformat(),
            "minutes": checks.run(cls._training_minutes, hours),
        }
        checks.run(check_day, "completed_on", completed_on, district_today())
        checks.raise_found()
        return training

    @staticmethod
    def _training_minutes(hours: float) -> int:
        if isinstance(hours, bool) or not isinstance(hours, int | float):
            raise InvalidField("hours must be a number", "hours")
        if not math.isfinite(hours):
            raise InvalidField("hours must be a finite number", "hours")
        if not 0 < hours <= 24 * 30:
            raise InvalidField("hours must be more than 0 and at most 720", "hours")
        # The hours as written (4.35 h is 261 minutes; 4.35 * 60 in binary is 260.99…),
        # truncated to whole minutes like a session's time.
        minutes = int(Decimal(repr(hours)) * 60)
        if minutes < 1:
            raise InvalidField("hours must come to at least one whole minute (0.017 h)", "hours")
        return minutes

    def insure_volunteer(self, origin: Origin, volunteer_id: str, year: int, policy_ref: str,
                         insurer: str) -> Written:
        """Record a volunteer's personal accident insurance for a year."""
        require_role(origin.actor, Role.recorder)
        policy_ref, insurer = self.insurance_fields(year, policy_ref, insurer)

        def attempt() -> Written:
            volunteer = self.get_volunteer(volunteer_id)  # in the path: 404 when unknown
            require_unit(origin.actor, volunteer.current_unit_id, "volunteers")
            volunteer.insure(year, policy_ref, insurer, origin.meta())
            return Written(volunteer.id, self._save(volunteer))

        return self._retrying(attempt)

    @staticmethod
    def insurance_fields(year: int, policy_ref: str, insurer: str, refused: Iterable[str] = ()
                         ) -> tuple[str, str]:
        """An insurance's policy reference and insurer as recorded, checked with its year on
        their own (422, naming every field refused; `refused`: as for `volunteer_fields`);
        the year is compared with the record's covers after."""
        checks = FieldChecks(("year", "policy_ref", "insurer"), refused)
        checks.run(check_cover_year, year, district_today())
        policy_ref = checks.run(check_text, "policy_ref", policy_ref) or ""
        insurer = checks.run(check_text, "insurer", insurer) or ""
        checks.raise_found()
        return policy_ref, insurer

    # -- activities -------------------------------------------------------------------------

    @staticmethod
    def activity_fields(program_code: str, organiser_unit_id: str, title: str,
                        starts_at: datetime, ends_at: datetime, station_unit_id: str | None = None,
                        place: str | None = None, refused: Iterable[str] = ()
                        ) -> dict[str, Any]:
        """What an activity's planning records of the request, checked on its own (422,
        naming every field refused; `refused`: as for `volunteer_fields`)."""
        checks = FieldChecks(("program_code", "organiser_unit_id", "title", "starts_at",
                              "ends_at", "station_unit_id", "place"), refused)
        fields = {"program_code": checks.run(check_program, program_code),
                  "organiser_unit_id": organiser_unit_id,
                  "title": checks.run(check_text, "title", title),
                  "starts_at": starts_at, "ends_at": ends_at,
                  "station_unit_id": station_unit_id or None,
                  "place": (None if not trimmed(place or "")
                            else checks.run(check_text, "place", place))}
        checks.run(check_instant, "starts_at", starts_at)
        checks.run(check_instant, "ends_at", ends_at)
        if checks.passed("starts_at", "ends_at") and ends_at <= starts_at:
            checks.add(InvalidField("ends_at must be after starts_at", "ends_at"))
        checks.raise_found()
        return fields

    def plan_activity(self, origin: Origin, program_code: str, organiser_unit_id: str, title: str,
                      starts_at: datetime, ends_at: datetime, station_unit_id: str | None = None,
                      place: str | None = None) -> Written:
        """Plan an activity of a program, organised by a unit, in a time window."""
        require_role(origin.actor, Role.recorder)
        fields = self.activity_fields(program_code, organiser_unit_id, title, starts_at, ends_at,
                                      station_unit_id, place)
        activity_id = new_activity_id()  # once: a keyed request draws the same id each attempt

        def attempt() -> Written:
            organiser = self._refer(Unit, organiser_unit_id, "organiser_unit_id", "unit")
            _open_until(organiser, ends_at, "organiser_unit_id")
            require_unit(origin.actor, organiser_unit_id, "activities")
            relied = {organiser.id: organiser.version}  # open: still so when stored
            if station_unit_id:
                station = self._refer(Unit, station_unit_id, "station_unit_id", "unit")
                if station.kind != UnitKind.station:
                    raise InvalidField(
                        f"station_unit_id must name a unit of kind station (unit {station.id} "
                        f"is of kind {station.kind})", "station_unit_id")
                _open_until(station, ends_at, "station_unit_id")
                relied[station.id] = station.version
            activity = Activity(**fields, id=activity_id, **origin.meta())  # type: ignore[call-arg]
            return Written(activity.id, self._save(activity, guard=WriteGuard(unchanged=relied)))

        return self._retrying(attempt)

    def get_activity(self, activity_id: str) -> Activity:
        """An activity by id (404 when unknown)."""
        return self._find(Activity, activity_id, "activity")

    def cancel_activity(self, origin: Origin, activity_id: str, reason: str) -> Written:
        """Cancel an activity; no new session may be recorded at it."""
        require_role(origin.actor, Role.recorder)

        def attempt() -> Written:
            activity = self.get_activity(activity_id)
            require_unit(origin.actor, activity.organiser_unit_id, "activities")
            activity.cancel(reason, origin.meta())
            return Written(activity.id, self._save(activity))

        return self._retrying(attempt)


def _open_until(unit: Unit, ends_at: datetime, field: str) -> None:
    """An activity of a closed unit may still be planned when its whole window lies before the
    closing date: the late record of an activity that truly took place."""
    unit.ensure_open_on(service_date(ends_at).isoformat(), field, "an activity that ended")


@dataclass(frozen=True)
class ServiceFacts:
    """What the views say of the service credited to a unit, read at `position`."""

    position: int
    last_service_on: str | None  # the last day with live service credited to it
    members: frozenset[str]  # every volunteer who was ever one of its members


_SESSION_CHANGES = (event_topic(ServiceSession, "Recorded"),
                    event_topic(ServiceSession, "Corrected"))
_JOINS = (event_topic(Volunteer, "Registered"), event_topic(Volunteer, "Transferred"))


def _may_credit(mapper: Any, stored: Sequence[StoredEvent], unit_id: str, day: str,
                members: set[str]) -> str | None:
    """Why events stored after the views were read may credit `unit_id` on or after `day`
    (None if none may): a session from that day organised by it or served by one of its
    members, or a volunteer joining it (their later service would be credited to it)."""
    for event in stored:
        if event.topic in _SESSION_CHANGES:
            e = mapper.to_domain_event(event)
            if e.service_date >= day and (e.organiser_unit_id == unit_id
                                          or e.volunteer_id in members):
                return (f"session {e.originator_id} on {e.service_date} was stored while unit "
                        f"{unit_id} was being closed")
        elif event.topic in _JOINS:
            e = mapper.to_domain_event(event)
            if getattr(e, "home_unit_id", None) == unit_id or getattr(
                    e, "to_unit_id", None) == unit_id:
                members.add(e.originator_id)
                if event.topic == _JOINS[1]:
                    return (f"volunteer {e.originator_id} was transferred to unit {unit_id} "
                            "while it was being closed")
    return None


def _personal_value(key: str, value: Any, checks: FieldChecks) -> Any:
    """A personal field's value as it is recorded, checked on its own (InvalidField; a
    refused skill goes to `checks`, naming its item)."""
    if key == "birth_date":
        if not isinstance(value, date):
            raise InvalidField("birth_date must be a date", key)
        check_day(key, value, district_today())
        return value.isoformat()
    if key == "gender":
        return _enum(Gender, key, value)
    if key == "political_status":
        return _enum(PoliticalStatus, key, value)
    if key == "skills":
        # An empty item is left out; one of hidden characters is refused (bb28 F2), naming
        # the item as the API's schema does (`skills.1`, bb29 F5), each of them.
        return [checks.run(check_text, f"{key}.{i}", str(s), MAX_SKILL)
                for i, s in enumerate(value) if trimmed(str(s))]
    return str(value).strip()


def _check_born_by(personal: dict[str, Any], registered_on: str, checks: FieldChecks,
                   given: frozenset[str] | None = None) -> None:
    """A volunteer is born on or before the day they register (ISO dates compare as text),
    and the date of birth inside their id number is their `birth_date` (bb32 F1, F2: an id
    number born in 2099, or on another day than birth_date, was taken). `given`: the fields
    the request sets, named when they disagree with what the record holds. Only fields that
    passed their own rules are compared (`personal` holds no other; `checks` keeps those)."""
    if not checks.passed("registered_on"):
        return
    born = personal.get("birth_date")
    if born is not None and born > registered_on:
        checks.add(InvalidField(f"birth_date {born} is after registered_on {registered_on}",
                                "birth_date"))
    in_id = id_birth(personal.get("id_number"))
    if in_id is None or (given is not None and not given & {"birth_date", "id_number"}):
        return  # a change of other fields is not refused for what the record held before
    if in_id > registered_on:
        checks.add(InvalidField(f"id_number holds the date of birth {in_id}, after "
                                f"registered_on {registered_on}", "id_number"))
    elif born is not None and born != in_id and checks.passed("birth_date", "id_number"):
        field = "birth_date" if given is not None and "id_number" not in given else "id_number"
        checks.add(InvalidField(f"id_number holds the date of birth {in_id}, but birth_date "
                                f"is {born}", field))
