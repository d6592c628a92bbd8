"""The directory: lists of volunteers (a unit's people, their ids) and of units, from the views."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PUBLIC, Fresh, HoursReader, MaybeActor, Services, ServicesDep
from api.routes.units import UnitEntry
from api.schemas import ETAGGED, KEYED_LIMIT, Id, KeyedLimit, PageCursor, Text, etagged, keyed
from ledger.access import require_unit
from ledger.calendar import district_today
from ledger.catalogue import Role, UnitKind
from ledger.errors import InvalidField, NotFound
from projections.directory import VolunteerQuery

router = APIRouter()


class Status(StrEnum):
    active = "active"
    deregistered = "deregistered"
    all = "all"


class VolunteerEntry(BaseModel):
    id: str
    volunteer_number: str
    name: str
    home_unit_id: str = Field(description=(
        "The unit the volunteer registered with (a transfer does not change it), as "
        "`GET /v1/volunteers/{id}` answers it."))
    current_unit_id: str = Field(description=(
        "The unit the volunteer belongs to today in district time (Asia/Shanghai): a transfer "
        "counts from its `effective_on` on; as `GET /v1/volunteers/{id}` answers it."))
    registered_on: str
    deregistered_on: str | None
    total_minutes: int = Field(description="Recorded service minutes, as the hours read says.")
    star_level: int = Field(ge=0, le=5)


class Volunteers(BaseModel):
    """A page of the volunteer directory; no personal data (phone, id number, birth date)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "as_of": "2017-07-01", "position": 812, "next_cursor": None, "items": [{
            "id": "vol-3f1c9a2e5b7d4c6a8e0f1a2b3c4d5e6f", "volunteer_number": "MLV0000001",
            "name": "林小梅", "home_unit_id": "unit-8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d",
            "current_unit_id": "unit-8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d",
            "registered_on": "2017-01-10", "deregistered_on": None, "total_minutes": 6120,
            "star_level": 1}]}]})

    as_of: str = Field(description="The day (district time) whose units and status it lists.")
    position: int = Field(description="How far the views it was read from have read.")
    items: list[VolunteerEntry]
    next_cursor: str | None


class Units(BaseModel):
    """A page of the unit directory."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "position": 812, "next_cursor": None, "items": [{
            "id": "unit-8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d", "name": "列东街道",
            "kind": "subdistrict", "parent_id": "unit-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "civilized_level": None, "closed_on": None}]}]})

    position: int = Field(description="How far the views it was read from have read.")
    items: list[UnitEntry]
    next_cursor: str | None


def known_unit(services: Services, unit_id: str, field: str) -> None:
    """A 422 naming `field` for a unit the ledger does not know (the views may not have read
    a unit just registered: the ledger is asked before it is refused)."""
    if services.models.knows_unit(unit_id):
        return
    try:
        services.ledger.get_unit(unit_id)
    except NotFound:
        raise InvalidField(f"no unit with id {unit_id!r}", field) from None


@router.get("/v1/volunteers", response_model=Volunteers, dependencies=[Fresh],
            responses=ETAGGED, tags=["volunteers"])
def list_volunteers(
    request: Request, response: Response, actor: HoursReader, services: ServicesDep,
    current_unit_id: Annotated[Id | None, Query(description=(
        "Only those who belong to this unit today (their `current_unit_id`: a transfer "
        "counts from its `effective_on`); an unknown unit is 422."))] = None,
    name: Annotated[Text | None, Query(description=(
        "Only those whose name begins with this text, exactly as written (a prefix, "
        "case-sensitive: `林` finds 林小梅)."))] = None,
    status: Annotated[Status, Query(description=(
        "`active` (default): not deregistered as of today; `deregistered`; `all`."))
    ] = Status.active,
    limit: KeyedLimit = KEYED_LIMIT,
    cursor: PageCursor = None,
) -> Any:
    """Volunteers in volunteer-number order, each with the unit they registered with
    (`home_unit_id`), the unit they belong to today (`current_unit_id`) and their recorded
    minutes and star level, as `GET /v1/volunteers/{id}` names them; no personal data. A
    recorder lists the volunteers who belong to its unit today only (`current_unit_id`
    defaults to its unit; another unit is 403). Pages are cut by key, not by offset: a walk
    with `next_cursor` serves everyone listed throughout it exactly once, whoever is
    transferred or deregistered meanwhile."""
    if actor.role is Role.recorder:
        current_unit_id = current_unit_id or actor.unit_id
        assert current_unit_id is not None  # a recorder's token always names its unit
        require_unit(actor, current_unit_id, "volunteers")
    elif current_unit_id is not None:
        known_unit(services, current_unit_id, "current_unit_id")
    query = VolunteerQuery(today=district_today().isoformat(), unit_id=current_unit_id,
                           name=name, status=status.value)
    read: dict[str, int] = {}

    def fetch(after: tuple[str, ...] | None, count: int) -> list[dict[str, Any]]:
        read["position"], items = services.models.volunteer_directory(query, after, count)
        return items

    items, next_cursor = keyed(fetch, lambda v: (v["volunteer_number"], v["id"]), limit,
                               cursor, request)
    return etagged(request, response, {"as_of": query.today, "position": read["position"],
                                       "items": items, "next_cursor": next_cursor})


@router.get("/v1/units", response_model=Units, dependencies=[Fresh], responses=ETAGGED,
            tags=["units"], openapi_extra=PUBLIC)
def list_units(
    request: Request, response: Response, actor: MaybeActor, services: ServicesDep,
    kind: Annotated[UnitKind | None, Query(description="Only units of this kind.")] = None,
    parent_id: Annotated[Id | None, Query(description=(
        "Only the units directly under this one; an unknown unit is 422."))] = None,
    limit: KeyedLimit = KEYED_LIMIT,
    cursor: PageCursor = None,
) -> Any:
    """Units in id order, closed ones included (with `closed_on`). Public, as a unit is a
    public fact (`GET /v1/units/{id}`; the rankings name every unit): nothing personal.
    Pages are cut by key: a walk with `next_cursor` serves each unit once."""
    if parent_id is not None:
        known_unit(services, parent_id, "parent_id")
    read: dict[str, int] = {}

    def fetch(after: tuple[str, ...] | None, count: int) -> list[dict[str, Any]]:
        read["position"], items = services.models.unit_directory(
            None if kind is None else kind.value, parent_id, after, count)
        return items

    items, next_cursor = keyed(fetch, lambda u: (u["id"],), limit, cursor, request)
    return etagged(request, response, {"position": read["position"], "items": items,
                                       "next_cursor": next_cursor})
