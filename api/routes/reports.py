"""Public aggregates: unit rankings and quarterly bulletins (no personal data)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import PUBLIC, Fresh, MaybeActor, ServicesDep
from api.schemas import (
    ETAGGED,
    ProgramCode,
    Whole,
    etagged,
    hours_field,
    paginate_ranked_async,
)
from ledger.catalogue import UnitKind

router = APIRouter(tags=["reports"])


class Basis(StrEnum):
    members = "members"
    organised = "organised"


class RankingItem(BaseModel):
    rank: int
    unit_id: str
    name: str
    kind: str
    total_minutes: int
    total_hours: float = hours_field()
    volunteers: int
    minutes_per_volunteer: float = Field(description=(
        "total_minutes / volunteers, rounded to the hundredth of a minute, halves up (0 with no "
        "volunteer)"))
    sessions: int


class Rankings(BaseModel):
    kind: str
    basis: str
    year: int | None
    quarter: int | None
    rollup: bool
    position: int
    items: list[RankingItem]
    next_cursor: str | None


class BulletinItem(BaseModel):
    unit_id: str
    name: str
    kind: str
    total_minutes: int
    sessions: int
    volunteers: int


class Bulletin(BaseModel):
    year: int
    quarter: int
    program: str
    basis: str
    position: int
    items: list[BulletinItem]
    next_cursor: str | None


@router.get("/v1/rankings/units", response_model=Rankings, dependencies=[Fresh],
            responses=ETAGGED, openapi_extra=PUBLIC)
async def unit_rankings(
    request: Request, response: Response, actor: MaybeActor, services: ServicesDep,
    kind: Annotated[UnitKind, Query(description="Units are ranked within one kind.")],
    year: Annotated[Whole | None, Query(ge=2000, le=2100)] = None,
    quarter: Annotated[Whole | None, Query(ge=1, le=4)] = None,
    basis: Basis = Basis.members,
    rollup: Annotated[bool, Query(description="Add each unit's descendants' minutes.")] = False,
    limit: Annotated[Whole | None, Query(ge=1, le=1000)] = None,
    cursor: str | None = None,
) -> Any:
    """Units of one kind ranked by minutes served; ties share a rank (1, 2, 2, 4). Every unit
    of the kind is listed, zeros included, but one closed before the period began. Pages of a
    walk (`limit`, then `next_cursor`) come from the version of the list the first page was
    cut from, for an hour; after that, a list that changed is a 409 `list-changed`."""
    position, items = await services.models.unit_rankings_async(
        kind.value, basis.value, year, quarter, rollup)
    page, next_cursor, position = await paginate_ranked_async(
        items, position, limit, cursor, request)
    body = {"kind": kind.value, "basis": basis.value, "year": year, "quarter": quarter,
            "rollup": rollup, "position": position, "items": page,
            "next_cursor": next_cursor}
    return etagged(request, response, body)


@router.get("/v1/bulletins/{year}/{quarter}", response_model=Bulletin, dependencies=[Fresh],
            responses=ETAGGED, openapi_extra=PUBLIC)
async def quarterly_bulletin(
    request: Request, response: Response, actor: MaybeActor, services: ServicesDep,
    year: Annotated[Whole, Path(ge=2000, le=2100)],
    quarter: Annotated[Whole, Path(ge=1, le=4)],
    program: ProgramCode = ProgramCode["B6"],
    basis: Basis = Basis.organised,
    limit: Annotated[Whole | None, Query(ge=1, le=1000)] = None,
    cursor: str | None = None,
) -> Any:
    """A quarter's bulletin of one program (B6 online civilisation by default), per unit."""
    position, items = await services.models.bulletin_async(
        year, quarter, str(program.value), basis.value)
    page, next_cursor, position = await paginate_ranked_async(
        items, position, limit, cursor, request)
    body = {"year": year, "quarter": quarter, "program": str(program.value),
            "basis": basis.value, "position": position, "items": page,
            "next_cursor": next_cursor}
    return etagged(request, response, body)
