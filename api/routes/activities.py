"""Activities: plan one occurrence of a program, look it up, cancel it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict

from api.deps import PUBLIC, MaybeActor, RecorderWriter, ServicesDep, origin_of
from api.limits import StrictBodyRoute
from api.schemas import (
    Body,
    Created,
    Id,
    IdempotencyKey,
    Instant,
    ProgramCode,
    Reason,
    Text,
    recognised_response,
)

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


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Created,
             responses=recognised_response(Created))
def plan_activity(body: ActivityIn, actor: RecorderWriter, services: ServicesDep,
                  key: IdempotencyKey, response: Response) -> dict[str, Any]:
    """Plan an activity of a program (A1…C4), organised by a unit, in a time window."""
    asked = (str(body.program_code.value), body.organiser_unit_id, body.title, body.starts_at,
             body.ends_at, body.station_unit_id, body.place)
    written = services.registered(
        actor, key, response, lambda: services.ledger.plan_activity(origin_of(actor), *asked),
        "act", lambda: services.ledger.activity_fields(*asked))
    return services.written(written)


@router.get("/{activity_id}", response_model=ActivityOut, openapi_extra=PUBLIC)
def get_activity(activity_id: str, actor: MaybeActor, services: ServicesDep) -> dict[str, Any]:
    """An activity (activities are public facts)."""
    a = services.ledger.get_activity(activity_id)
    return {"id": a.id, "program_code": a.program_code, "organiser_unit_id": a.organiser_unit_id,
            "title": a.title, "starts_at": a.starts_at.isoformat(),
            "ends_at": a.ends_at.isoformat(), "station_unit_id": a.station_unit_id,
            "place": a.place, "cancelled": a.is_cancelled, "version": a.version}


@router.post("/{activity_id}/cancellation", response_model=Created)
def cancel_activity(activity_id: str, body: CancellationIn, actor: RecorderWriter,
                    services: ServicesDep) -> dict[str, Any]:
    """Cancel an activity: no new session may be recorded at it."""
    written = services.ledger.cancel_activity(origin_of(actor), activity_id, body.reason)
    return services.written(written)
