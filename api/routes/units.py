"""Units: register, look up, rename or move, close."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, field_validator

from api.after_schema import SOME_DAY, SOME_TEXT, after_schema
from api.deps import PUBLIC, Admin, MaybeActor, ServicesDep, origin_of
from api.limits import StrictBodyRoute
from api.schemas import (
    IF_MATCH_RESPONSES,
    Body,
    Change,
    Created,
    Day,
    Id,
    IdempotencyKey,
    IfMatch,
    Reason,
    Text,
    not_modified,
    recognised_response,
    version_tagged,
)
from ledger.catalogue import CivilizedLevel, UnitKind
from ledger.registry import ServiceFacts

router = APIRouter(prefix="/v1/units", tags=["units"], route_class=StrictBodyRoute)


class UnitIn(Body):
    name: Text
    kind: UnitKind
    parent_id: Id | None = None
    civilized_level: CivilizedLevel | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "列东街道", "kind": "subdistrict", "parent_id": None}]})


class UnitChange(Change):
    name: Text | None = None
    parent_id: Id | None = None  # null: no parent

    @field_validator("name")
    @classmethod
    def _kept(cls, name: str | None) -> str | None:
        if name is None:  # given as null: a unit always has a name
            raise ValueError("cannot be removed (null): a unit always has a name")
        return name


class UnitClosure(Body):
    closed_on: Day
    reason: Reason


class UnitEntry(BaseModel):
    """A unit as the directory lists it (api/routes/directory.py)."""

    id: str
    name: str
    kind: str
    parent_id: str | None
    civilized_level: str | None
    closed_on: str | None


class UnitOut(UnitEntry):
    version: int


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Created,
             responses=recognised_response(Created))
@after_schema(UnitIn, lambda ledger, v, held: ledger.unit_fields(
    v.get("name", SOME_TEXT), v.get("kind", "community"), v.get("parent_id"),
    v.get("civilized_level"), refused=held))
def register_unit(body: UnitIn, actor: Admin, services: ServicesDep, key: IdempotencyKey,
                  response: Response) -> dict[str, Any]:
    """Register a unit (town, subdistrict, community, department, school, organisation, station)."""
    asked = (body.name, body.kind.value, body.parent_id,
             body.civilized_level.value if body.civilized_level else None)
    written = services.registered(
        actor, key, response, lambda: services.ledger.register_unit(origin_of(actor), *asked),
        "unit", lambda: services.ledger.unit_fields(*asked))
    return services.written(written)


@router.get("/{unit_id}", response_model=UnitOut, openapi_extra=PUBLIC,
            responses=version_tagged("unit"))
def get_unit(unit_id: str, actor: MaybeActor, services: ServicesDep, request: Request,
             response: Response) -> Any:
    """A unit as the ledger knows it now (units are public facts)."""
    unit = services.ledger.get_unit(unit_id)
    if (held := not_modified(request, response, unit.version)) is not None:
        return held
    return {"id": unit.id, "name": unit.name, "kind": unit.kind, "parent_id": unit.parent_id,
            "civilized_level": unit.civilized_level, "closed_on": unit.closed_on,
            "version": unit.version}


@router.patch("/{unit_id}", response_model=Created, responses=IF_MATCH_RESPONSES)
@after_schema(UnitChange, lambda ledger, v, held: ledger.unit_change_fields(
    v.get("name"), refused=held))
def change_unit(unit_id: str, body: UnitChange, actor: Admin, services: ServicesDep,
                expected: IfMatch) -> dict[str, Any]:
    """Rename a unit and/or move it under another parent (`"parent_id": null`: to the top),
    in one write: both, or neither if one is refused. With `If-Match` (the `ETag` its GET
    answered), a unit changed since is 412; one changed by another request while this one
    was written is 409."""
    written = services.ledger.change_unit(
        origin_of(actor), unit_id, name=body.name, parent_id=body.parent_id,
        move="parent_id" in body.model_fields_set, expected_version=expected)
    return services.written(written)


@router.post("/{unit_id}/closure", response_model=Created, responses=IF_MATCH_RESPONSES)
@after_schema(UnitClosure, lambda ledger, v, held: ledger.closure_checks(
    v.get("closed_on", SOME_DAY), v.get("reason", SOME_TEXT), held).raise_found())
def close_unit(unit_id: str, body: UnitClosure, actor: Admin, services: ServicesDep,
               expected: IfMatch) -> dict[str, Any]:
    """Close a unit: nothing new may refer to it.

    Not on or before a day it has live service credited on (sessions it organised, or that
    its members served): 409 `credited-after-closure`, naming `closed_on`. The views are
    brought up to every stored event first (503 if they cannot be in time). With `If-Match`
    (the `ETag` its GET answered), a unit changed since is 412."""
    def service() -> ServiceFacts:
        services.caught_up()  # the views hold every event stored so far (else 503)
        return services.models.service_facts(unit_id)

    services.ledger.get_unit(unit_id)  # 404 before anything else
    written = services.ledger.close_unit(origin_of(actor), unit_id, body.closed_on, body.reason,
                                         service, expected_version=expected)
    return services.written(written)
