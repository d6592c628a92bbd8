"""Volunteer hours and star levels, and award eligibility with its explanation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import EligibilityReader, Fresh, HoursReader, Services, ServicesDep
from api.schemas import ETAGGED, Whole, etagged, hours_field, kept_page, paginate_ranked
from ledger.awards import RECIPIENT_KIND
from ledger.catalogue import PROGRAMS, AwardKind
from ledger.errors import NotFound

router = APIRouter(tags=["hours and eligibility"])


class Hours(BaseModel):
    volunteer_id: str
    total_minutes: int
    total_hours: float = hours_field()
    star_level: int
    by_category: dict[str, int]
    by_program: dict[str, int]
    by_year: dict[str, int]
    by_quarter: dict[str, int]
    sessions: int
    training_minutes: int
    training_hours: float = Field(description="training_minutes / 60, rounded down to the "
                                  "hundredth")
    last_service_date: str | None
    position: int


class Criterion(BaseModel):
    name: str = Field(description="The criterion's key in the award rules")
    required: Any
    actual: Any = Field(description=(
        "In the unit of `required` (hours for hours), as of 31 December of the award year for "
        "a volunteer's star level, training and registered days. Hours are compared exactly, "
        "in whole minutes, and shown rounded down to the hundredth, or to as many decimals as "
        "`required` has: a shown `actual` reaches the shown `required` exactly when `passed`"))
    passed: bool


class Candidate(BaseModel):
    candidate_id: str
    name: str | None = None
    eligible: bool
    criteria: list[Criterion]


class Eligibility(BaseModel):
    award: str
    year: int
    rules_version: int
    position: int
    items: list[Candidate]
    next_cursor: str | None = None


@router.get("/v1/volunteers/{volunteer_id}/hours", response_model=Hours, dependencies=[Fresh],
            responses=ETAGGED)
async def volunteer_hours(volunteer_id: str, request: Request, response: Response,
                          actor: HoursReader, services: ServicesDep) -> Any:
    """A volunteer's recorded minutes by category, program and year, and their star level."""
    hours = await services.models.volunteer_hours_async(volunteer_id)
    if hours is None:  # not in the view: ask the ledger (404 if it does not know them either)
        hours = await run_in_threadpool(_caught_up_hours, services, volunteer_id)
    return etagged(request, response, hours)


def _caught_up_hours(services: Services, volunteer_id: str) -> dict[str, Any]:
    services.ledger.require_volunteer(volunteer_id)  # NotFound when the ledger does not know them
    services.caught_up()  # 503 while the views are rebuilt: not a 404 for a known volunteer
    hours = services.models.volunteer_hours(volunteer_id)
    if hours is None:
        raise NotFound(f"no volunteer with id {volunteer_id!r}")
    return hours


def _eligibility(services: Services, award: AwardKind, year: int,
                 candidate_id: str | None) -> dict[str, Any]:
    result = services.models.eligibility(award.value, year, candidate_id)
    if result is None:
        raise NotFound(f"no rules are published for {award.value} {year}")
    return result


@router.get("/v1/eligibility/{award}/{year}", response_model=Eligibility, dependencies=[Fresh],
            responses=ETAGGED)
def eligibility(
    award: AwardKind, year: Annotated[Whole, Path(ge=2000, le=2100)], request: Request,
    response: Response, actor: EligibilityReader, services: ServicesDep,
    eligible: Annotated[bool | None, Query(description="Only (in)eligible candidates.")] = None,
    limit: Annotated[Whole | None, Query(ge=1, le=5000)] = None,
    cursor: str | None = None,
) -> Any:
    """Every candidate for an award and year, eligible or not, and why, per criterion."""
    context: dict[str, Any] = {}
    kept = kept_page(limit, cursor, request, context)
    if kept is not None:  # a later page of a walk, cut from its first page's version
        page, next_cursor, position = kept
        return etagged(request, response, {
            "award": award.value, "year": year, **context, "items": page,
            "position": position, "next_cursor": next_cursor})
    result = _eligibility(services, award, year, None)
    items = result["items"]
    if eligible is not None:
        items = [i for i in items if i["eligible"] is eligible]
    context = {"rules_version": result["rules_version"]}  # a later page: its first page's
    result["items"], result["next_cursor"], result["position"] = paginate_ranked(
        items, result["position"], limit, cursor, request, context)
    result.update(context)
    return etagged(request, response, result)


@router.get("/v1/eligibility/{award}/{year}/{candidate_id}", response_model=Eligibility,
            dependencies=[Fresh], responses=ETAGGED)
def candidate_eligibility(
    award: AwardKind, year: Annotated[Whole, Path(ge=2000, le=2100)], candidate_id: str,
    request: Request, response: Response, actor: EligibilityReader, services: ServicesDep,
) -> Any:
    """One candidate's eligibility for an award and year, per criterion."""
    try:
        result = _eligibility(services, award, year, candidate_id)
    except NotFound:
        if not _may_be_candidate(services, award, candidate_id):
            raise  # no recipient of the award's kind has that id: 404 now (bb27 F2)
        # Registered after what the views have read (a worker behind, another process's
        # write): a 404 only once they hold every stored event (503 otherwise), as a
        # volunteer's hours answer (bb24 F2).
        services.caught_up()
        result = _eligibility(services, award, year, candidate_id)
    return etagged(request, response, result)


def _may_be_candidate(services: Services, award: AwardKind, candidate_id: str) -> bool:
    """Whether the ledger knows the id as a recipient of the award's kind (a volunteer, a
    unit of the kind, a program of the catalogue), whatever the views have read."""
    kind = RECIPIENT_KIND[award]
    if kind == "program":
        return candidate_id in PROGRAMS
    try:
        if kind == "volunteer":
            services.ledger.require_volunteer(candidate_id)
            return True
        return bool(services.ledger.get_unit(candidate_id).kind == kind)
    except NotFound:
        return False
