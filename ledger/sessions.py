"""Service sessions: recorded time at one activity, corrected or voided, never erased."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha1
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.domain import event

from ledger.aggregate import LedgerAggregate
from ledger.calendar import MAX_SESSION, MIN_SESSION, check_instant, service_date, whole_minutes
from ledger.errors import FieldChecks, InvalidField, LedgerError, SessionVoided
from ledger.text import blank, check_reason, check_shown

SESSION_NAMESPACE = uuid5(NAMESPACE_URL, "urn:vledger:source-record")
_NAMESPACE_BYTES = SESSION_NAMESPACE.bytes
# A record's fields in the order its body gives them, the order its refused fields are named in.
RECORD_ORDER = ("volunteer_id", "activity_id", "started_at", "ended_at", "source_record_id")
CORRECTION_ORDER = ("started_at", "ended_at", "reason")


def session_id_for(source_record_id: str) -> str:
    """The session id is derived from the source record id, so a record is stored only once:
    `uuid5(SESSION_NAMESPACE, source_record_id).hex`, worked out without building a `UUID`
    (which was a twentieth of recording a session)."""
    digest = bytearray(sha1(_NAMESPACE_BYTES + source_record_id.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return f"ses-{digest.hex()}"


@dataclass(frozen=True)
class SessionRecord:
    """One service record as a unit's clerk or an importer submits it."""

    volunteer_id: str
    activity_id: str
    started_at: datetime
    ended_at: datetime
    source_record_id: str


@dataclass
class RecordOutcome:
    """What became of one record of a batch."""

    index: int
    status: str  # "accepted", "duplicate" or "rejected"
    session_id: str | None = None
    minutes: int | None = None
    error: LedgerError | None = field(default=None, repr=False)


class ServiceSession(LedgerAggregate):
    """A service session; its valid time (served) is kept apart from its recorded time."""

    id: str  # chosen by the ledger, see ledger.aggregate


    @event("Recorded")
    def __init__(
        self,
        volunteer_id: str,
        activity_id: str,
        program_code: str,
        organiser_unit_id: str,
        station_unit_id: str | None,
        started_at: datetime,
        ended_at: datetime,
        minutes: int,
        service_date: str,
        source_record_id: str,
        actor: dict[str, Any],
        source: str,
    ) -> None:
        self.volunteer_id = volunteer_id
        self.activity_id = activity_id
        self.program_code = program_code
        self.organiser_unit_id = organiser_unit_id
        self.station_unit_id = station_unit_id
        self.started_at = started_at
        self.ended_at = ended_at
        self.minutes = minutes
        self.service_date = service_date
        self.source_record_id = source_record_id
        self.original = [started_at.timestamp(), ended_at.timestamp()]
        self.voided_reason: str | None = None

    @property
    def is_voided(self) -> bool:
        return self.voided_reason is not None

    def same_record(self, record: SessionRecord) -> bool:
        """Whether a record repeats the one this session was created from (same instants)."""
        return (
            record.volunteer_id == self.volunteer_id
            and record.activity_id == self.activity_id
            and record.started_at.timestamp() == self.original[0]
            and record.ended_at.timestamp() == self.original[1]
        )

    def has_times(self, started_at: datetime, ended_at: datetime) -> bool:
        """Whether the session was served at these instants now (offsets aside)."""
        return (started_at.timestamp(), ended_at.timestamp()) == (
            self.started_at.timestamp(), self.ended_at.timestamp())

    def correct(self, started_at: datetime, ended_at: datetime, reason: str,
                meta: dict[str, Any]) -> None:
        """Replace the served time; the previous one stays in the history."""
        self._ensure_live()
        self._corrected(
            volunteer_id=self.volunteer_id,
            program_code=self.program_code,
            organiser_unit_id=self.organiser_unit_id,
            started_at=started_at,
            ended_at=ended_at,
            minutes=whole_minutes(started_at, ended_at),
            service_date=service_date(started_at).isoformat(),
            previous_minutes=self.minutes,
            previous_service_date=self.service_date,
            reason=reason,
            **meta,
        )

    def void(self, reason: str, meta: dict[str, Any]) -> None:
        """Take the session off the record; it stays in the history with its reason."""
        self._ensure_live()
        self._voided(
            volunteer_id=self.volunteer_id,
            program_code=self.program_code,
            organiser_unit_id=self.organiser_unit_id,
            minutes=self.minutes,
            service_date=self.service_date,
            reason=reason,
            **meta,
        )

    def _ensure_live(self) -> None:
        if self.is_voided:
            raise SessionVoided(f"session {self.id} was voided: {self.voided_reason}")

    @event("Corrected")
    def _corrected(
        self, volunteer_id: str, program_code: str, organiser_unit_id: str,
        started_at: datetime, ended_at: datetime, minutes: int, service_date: str,
        previous_minutes: int, previous_service_date: str, reason: str,
        actor: dict[str, Any], source: str,
    ) -> None:
        self.started_at = started_at
        self.ended_at = ended_at
        self.minutes = minutes
        self.service_date = service_date

    @event("Voided")
    def _voided(
        self, volunteer_id: str, program_code: str, organiser_unit_id: str, minutes: int,
        service_date: str, reason: str, actor: dict[str, Any], source: str,
    ) -> None:
        self.voided_reason = reason


def check_times(started_at: datetime, ended_at: datetime, now: datetime,
                checks: FieldChecks) -> None:
    """The rules a session's times obey on their own; what they refuse goes to `checks`."""
    checks.run(check_instant, "started_at", started_at)
    checks.run(check_instant, "ended_at", ended_at)
    started = checks.passed("started_at")
    if checks.passed("ended_at"):
        if started:
            checks.run(_check_length, started_at, ended_at)
        if ended_at > now:
            checks.add(InvalidField("ended_at lies in the future", "ended_at"))
    # A start in the future is named on its own field: beside an end before it, "ended_at
    # must be after started_at" would otherwise be all the answer said (bb39 F10).
    if started and started_at > now:
        checks.add(InvalidField("started_at lies in the future", "started_at"))


def record_checks(started_at: datetime, ended_at: datetime, source_record_id: str,
                  now: datetime, refused: Iterable[str] = ()) -> FieldChecks:
    """The rules a session record's own fields obey, run to the end (`refused`: fields the
    request's schema refused already, held as refused)."""
    checks = FieldChecks(RECORD_ORDER, refused)
    check_times(started_at, ended_at, now, checks)
    if blank(source_record_id):
        checks.add(InvalidField("source_record_id must not be empty", "source_record_id"))
    else:
        # "SRC1" and "SRC1\u200b" would be two records that look the same (bb31 F4).
        checks.run(check_shown, "source_record_id", source_record_id)
    return checks


def correction_checks(started_at: datetime, ended_at: datetime, reason: str, now: datetime,
                      refused: Iterable[str] = ()) -> tuple[FieldChecks, str | None]:
    """The rules a correction's own fields obey, run to the end, and its reason as recorded
    (`refused`: as for `record_checks`)."""
    checks = FieldChecks(CORRECTION_ORDER, refused)
    check_times(started_at, ended_at, now, checks)
    return checks, checks.run(check_reason, reason)


def _check_length(started_at: datetime, ended_at: datetime) -> None:
    if ended_at <= started_at:
        raise InvalidField("ended_at must be after started_at", "ended_at")
    if ended_at - started_at < MIN_SESSION:
        # Minutes are whole and truncated: a shorter session would count as a session and
        # make its volunteer active in every view for no minute of service.
        raise InvalidField("a session must last at least one whole minute", "ended_at")
    if ended_at - started_at > MAX_SESSION:
        raise InvalidField("a session may last at most 24 hours", "ended_at")
