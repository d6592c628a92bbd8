"""Service sessions: record (one or a batch), look up, correct, void."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.after_schema import SOME_INSTANT, SOME_LATER_INSTANT, SOME_TEXT, after_schema
from api.deps import HoursReader, RecorderWriter, ServicesDep, origin_of
from api.errors import field_errors, problem_type, status_of
from api.limits import StrictBodyRoute
from api.schemas import (
    IF_MATCH_RESPONSES,
    Body,
    Id,
    IfMatch,
    Instant,
    Reason,
    not_modified,
    version_tagged,
)
from ledger import SessionRecord
from ledger.calendar import now
from ledger.sessions import correction_checks, record_checks
from ledger.text import reason_checks

router = APIRouter(prefix="/v1/service-sessions", tags=["service sessions"],
                   route_class=StrictBodyRoute)


class SessionIn(Body):
    volunteer_id: Id
    activity_id: Id
    started_at: Instant
    ended_at: Instant
    source_record_id: Id

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "volunteer_id": "vol-…", "activity_id": "act-…",
        "started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T11:30:00+08:00",
        "source_record_id": "lidong-2017-000123"}]})

    def record(self) -> SessionRecord:
        return SessionRecord(self.volunteer_id, self.activity_id, self.started_at,
                             self.ended_at, self.source_record_id)


class SessionWrite(BaseModel):
    id: str
    minutes: int
    position: int


class CorrectionIn(Body):
    started_at: Instant
    ended_at: Instant
    reason: Reason


class VoidIn(Body):
    reason: Reason


class BatchIn(Body):
    records: list[SessionIn] = Field(min_length=1, max_length=5000)


class BatchItem(BaseModel):
    index: int
    status: str = Field(description="accepted, duplicate or rejected")
    id: str | None = None
    minutes: int | None = None
    error: dict[str, Any] | None = Field(default=None, description=(
        "Why the record was rejected: the problem a single write of it would answer (`type`, "
        "`title`, `status`, `detail`), with `field`, the first field it names, and `errors`, "
        "every field it names as the request body places it (`records.3.started_at`)."))


class BatchOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    position: int
    results: list[BatchItem]


def _record_checks(ledger: Any, v: Mapping[str, Any], held: frozenset[str]) -> None:
    """The ledger's checks of a record on its own, after its schema refused some of it (a
    single record's body, or an item of a batch)."""
    record_checks(v.get("started_at", SOME_INSTANT), v.get("ended_at", SOME_LATER_INSTANT),
                  v.get("source_record_id", SOME_TEXT), now(), held).raise_found()


class SessionOut(BaseModel):
    id: str
    volunteer_id: str
    activity_id: str
    program_code: str
    organiser_unit_id: str
    started_at: str
    ended_at: str
    minutes: int
    service_date: str
    source_record_id: str
    voided: bool
    voided_reason: str | None
    version: int


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SessionWrite,
             responses={200: {"model": SessionWrite,
                              "description": "The same record was already stored: its "
                                             "session as it stands (minutes after any "
                                             "correction, 0 after a void) and the position "
                                             "of its last event, nothing written."}})
@after_schema(SessionIn, _record_checks)
def record_session(body: SessionIn, actor: RecorderWriter, services: ServicesDep,
                   response: Response) -> dict[str, Any]:
    """Record a session; the same `source_record_id` and content again answers 200, same id."""
    written = services.ledger.record_session(origin_of(actor), body.record())
    if not written.created:
        response.status_code = status.HTTP_200_OK
    return services.written(written, minutes=written.minutes)


@router.post("/batch", response_model=BatchOut)
@after_schema(SessionIn, _record_checks, items="records")
def record_batch(body: BatchIn, actor: RecorderWriter, services: ServicesDep) -> dict[str, Any]:
    """Record up to 5,000 sessions in one transaction; each record gets its own outcome."""
    result = services.ledger.record_sessions(origin_of(actor), [r.record() for r in body.records])
    services.after_write(result.position)
    items = []
    for o in result.outcomes:
        item: dict[str, Any] = {"index": o.index, "status": o.status, "id": o.session_id,
                                "minutes": o.minutes}
        if o.error is not None:  # the problem a single write of the record would answer
            code, title = status_of(o.error)
            item["error"] = {"type": problem_type(o.error), "title": title, "status": code,
                             "field": o.error.field, "detail": o.error.rule}
            errors = field_errors(o.error, f"records.{o.index}.")
            if errors is not None:  # a record has five fields: no cap is needed
                item["error"]["errors"] = errors
        items.append(item)
    return {"accepted": result.count("accepted"), "duplicates": result.count("duplicate"),
            "rejected": result.count("rejected"), "position": result.position, "results": items}


@router.get("/{session_id}", response_model=SessionOut, responses=version_tagged("session"))
def get_session(session_id: str, actor: HoursReader, services: ServicesDep, request: Request,
                response: Response) -> Any:
    """A session as it stands now (its history is under the volunteer's history)."""
    s = services.ledger.get_session(session_id)
    if (held := not_modified(request, response, s.version)) is not None:
        return held
    return {"id": s.id, "volunteer_id": s.volunteer_id, "activity_id": s.activity_id,
            "program_code": s.program_code, "organiser_unit_id": s.organiser_unit_id,
            "started_at": s.started_at.isoformat(), "ended_at": s.ended_at.isoformat(),
            "minutes": s.minutes, "service_date": s.service_date,
            "source_record_id": s.source_record_id, "voided": s.is_voided,
            "voided_reason": s.voided_reason, "version": s.version}


@router.post("/{session_id}/corrections", response_model=SessionWrite,
             responses=IF_MATCH_RESPONSES)
@after_schema(CorrectionIn, lambda ledger, v, held: correction_checks(
    v.get("started_at", SOME_INSTANT), v.get("ended_at", SOME_LATER_INSTANT),
    v.get("reason", SOME_TEXT), now(), held)[0].raise_found())
def correct_session(session_id: str, body: CorrectionIn, actor: RecorderWriter,
                    services: ServicesDep, expected: IfMatch) -> dict[str, Any]:
    """Correct a session's times, with a reason; the previous times stay in the history.

    A session changed by another request while this one was written answers 409; with
    `If-Match`, a session no longer at that version answers 412. The same correction sent
    again answers 200 and writes nothing."""
    written = services.ledger.correct_session(
        origin_of(actor), session_id, body.started_at, body.ended_at, body.reason, expected)
    return services.written(written, minutes=written.minutes)


@router.post("/{session_id}/void", response_model=SessionWrite, responses=IF_MATCH_RESPONSES)
@after_schema(VoidIn, lambda ledger, v, held: reason_checks(
    v.get("reason", SOME_TEXT), held).raise_found())
def void_session(session_id: str, body: VoidIn, actor: RecorderWriter,
                 services: ServicesDep, expected: IfMatch) -> dict[str, Any]:
    """Void a session, with a reason; it no longer counts but stays in the history.

    Concurrent changes and `If-Match` are answered as for corrections."""
    written = services.ledger.void_session(origin_of(actor), session_id, body.reason, expected)
    return services.written(written, minutes=0)
