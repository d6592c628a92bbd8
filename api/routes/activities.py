"""Activities: plan one occurrence of a program, list them, look one up, cancel it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.after_schema import SOME_INSTANT, SOME_LATER_INSTANT, SOME_TEXT, after_schema
from api.deps import PUBLIC, Fresh, MaybeActor, RecorderWriter, ServicesDep, origin_of
from api.limits import StrictBodyRoute
from api.routes.directory import known_unit
from api.schemas import (
    ETAGGED,
    KEYED_LIMIT,
    Body,
    Created,
    Id,
    IdempotencyKey,
    Instant,
    KeyedLimit,
    PageCursor,
    ProgramCode,
    Reason,
    Text,
    etagged,
    keyed,
    recognised_response,
)
from ledger.calendar import check_instant
from ledger.errors import FieldChecks, InvalidField
from ledger.text import reason_checks
from projections.activities import ActivityQuery, utc_key

router = APIRouter(prefix="/v1/activities", tags=["activities"], route_class=StrictBodyRoute)


class ActivityIn(Body):
    program_code: ProgramCode
    organiser_unit_id: Id
    title: Text
    starts_at: Instant
    ends_at: Instant
    station_unit_id: Id | None = None
    place: Text | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "program_code": "B5", "organiser_unit_id": "unit-…", "title": "3·5学雷锋纪念日便民服务",
        "starts_at": "2017-03-05T08:00:00+08:00", "ends_at": "2017-03-05T18:00:00+08:00"}]})


class CancellationIn(Body):
    reason: Reason


class ActivityOut(BaseModel):
    id: str
    program_code: str
    organiser_unit_id: str
    title: str
    starts_at: str
    ends_at: str
    station_unit_id: str | None
    place: str | None
    cancelled: bool
    version: int


class ActivityStatus(StrEnum):
    active = "active"
    cancelled = "cancelled"
    all = "all"


class ActivityEntry(ActivityOut):
    cancelled_at: str | None = Field(description=(
        "When the cancellation was recorded (RFC 3339); null while it is not cancelled."))


class Activities(BaseModel):
    """A page of activities, in order of start."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "position": 812, "next_cursor": None, "items": [{
            "id": "act-5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", "title": "3·5学雷锋纪念日便民服务",
            "program_code": "B5", "organiser_unit_id": "unit-8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d",
            "station_unit_id": None, "place": None,
            "starts_at": "2017-03-05T08:00:00+08:00", "ends_at": "2017-03-05T18:00:00+08:00",
            "cancelled": False, "cancelled_at": None, "version": 1}]}]})

    position: int = Field(description="How far the view it was read from has read.")
    items: list[ActivityEntry]
    next_cursor: str | None


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Created,
             responses=recognised_response(Created))
@after_schema(ActivityIn, lambda ledger, v, held: ledger.activity_fields(
    v.get("program_code", "A1"), v.get("organiser_unit_id", SOME_TEXT), v.get("title", SOME_TEXT),
    v.get("starts_at", SOME_INSTANT), v.get("ends_at", SOME_LATER_INSTANT),
    v.get("station_unit_id"), v.get("place"), refused=held))
def plan_activity(body: ActivityIn, actor: RecorderWriter, services: ServicesDep,
                  key: IdempotencyKey, response: Response) -> dict[str, Any]:
    """Plan an activity of a program (A1…C4), organised by a unit, in a time window."""
    asked = (str(body.program_code.value), body.organiser_unit_id, body.title, body.starts_at,
             body.ends_at, body.station_unit_id, body.place)
    written = services.registered(
        actor, key, response, lambda: services.ledger.plan_activity(origin_of(actor), *asked),
        "act", lambda: services.ledger.activity_fields(*asked))
    return services.written(written)


@router.get("", response_model=Activities, dependencies=[Fresh], responses=ETAGGED,
            openapi_extra=PUBLIC)
def list_activities(
    request: Request, response: Response, actor: MaybeActor, services: ServicesDep,
    organiser_unit_id: Annotated[Id | None, Query(description=(
        "Only the activities this unit organises; an unknown unit is 422."))] = None,
    program_code: Annotated[ProgramCode | None, Query(description=(
        "Only the activities of this program (A1…C4)."))] = None,
    start: Annotated[Instant | None, Query(alias="from", description=(
        "Only the activities whose window (inclusive) ends at or after this instant "
        "(RFC 3339 with an offset)."))] = None,
    end: Annotated[Instant | None, Query(alias="to", description=(
        "Only the activities whose window (inclusive) starts at or before this instant "
        "(RFC 3339 with an offset); not before `from`. With `from`: the windows that overlap "
        "[`from`, `to`]."))] = None,
    status: Annotated[ActivityStatus, Query(description=(
        "`all` (default); `active`: not cancelled (sessions may be recorded at it); "
        "`cancelled`."))] = ActivityStatus.all,
    limit: KeyedLimit = KEYED_LIMIT,
    cursor: PageCursor = None,
) -> Any:
    """Activities in order of start (then id), each as `GET /v1/activities/{id}` answers it
    and when it was cancelled: where a clerk finds the ids to record sessions with. Public,
    as an activity is. Pages are cut by key: a walk with `next_cursor` serves each activity
    listed throughout it once."""
    checks = FieldChecks(("from", "to"))
    for name, instant in (("from", start), ("to", end)):
        if instant is not None:  # bb37 F1: a year past 9999 in UTC was a 500
            checks.run(check_instant, name, instant)
    if start is not None and end is not None and checks.passed("from", "to") and end < start:
        checks.add(InvalidField("to must not be before from", "to"))
    checks.raise_found()
    start_key, end_key = _key(start), _key(end)
    # The same instant written with another offset names the same list (bb37 F4).
    same = {name: key for name, key in (("from", start_key), ("to", end_key)) if key}
    if organiser_unit_id is not None:
        known_unit(services, organiser_unit_id, "organiser_unit_id")
    query = ActivityQuery(
        organiser_unit_id=organiser_unit_id,
        program_code=None if program_code is None else str(program_code.value),
        start=start_key, end=end_key, status=status.value)
    read: dict[str, int] = {}

    def fetch(after: tuple[str, ...] | None, count: int) -> list[dict[str, Any]]:
        read["position"], items = services.models.activity_directory(query, after, count)
        return items

    items, next_cursor = keyed(fetch, lambda a: (utc_key(a["starts_at"]), a["id"]), limit,
                               cursor, request, same)
    return etagged(request, response, {"position": read["position"], "items": items,
                                       "next_cursor": next_cursor})


def _key(instant: datetime | None) -> str | None:
    return None if instant is None else utc_key(instant)


@router.get("/{activity_id}", response_model=ActivityOut, openapi_extra=PUBLIC)
def get_activity(activity_id: str, actor: MaybeActor, services: ServicesDep) -> dict[str, Any]:
    """An activity (activities are public facts)."""
    a = services.ledger.get_activity(activity_id)
    return {"id": a.id, "program_code": a.program_code, "organiser_unit_id": a.organiser_unit_id,
            "title": a.title, "starts_at": a.starts_at.isoformat(),
            "ends_at": a.ends_at.isoformat(), "station_unit_id": a.station_unit_id,
            "place": a.place, "cancelled": a.is_cancelled, "version": a.version}


@router.post("/{activity_id}/cancellation", response_model=Created)
@after_schema(CancellationIn, lambda ledger, v, held: reason_checks(
    v.get("reason", SOME_TEXT), held).raise_found())
def cancel_activity(activity_id: str, body: CancellationIn, actor: RecorderWriter,
                    services: ServicesDep) -> dict[str, Any]:
    """Cancel an activity: no new session may be recorded at it."""
    written = services.ledger.cancel_activity(origin_of(actor), activity_id, body.reason)
    return services.written(written)
