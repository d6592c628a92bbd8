"""Award rules (published per award and year, versioned) and awards granted or revoked."""

from __future__ import annotations

from enum import StrEnum
from functools import cache, partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.after_schema import SOME_TEXT, after_schema
from api.deps import (
    Admin,
    CommitteeWriter,
    EligibilityReader,
    Fresh,
    Services,
    ServicesDep,
    origin_of,
)
from api.limits import StrictBodyRoute
from api.routes.hours import Criterion
from api.schemas import (
    ETAGGED,
    KEYED_LIMIT,
    Created,
    Id,
    KeyedLimit,
    PageCursor,
    Reason,
    Text,
    Whole,
    Year,
    etagged,
    keyed,
)
from api.schemas import Body as StrictBody
from ledger.awards import CRITERIA
from ledger.catalogue import AwardKind
from ledger.errors import NotFound
from projections.awards import AwardQuery

router = APIRouter(tags=["awards"], route_class=StrictBodyRoute)

_EXAMPLE = {"min_hours_in_year": 100, "min_star_level": 1, "training_required": True,
            "min_registered_days": 180}


class RulesOut(BaseModel):
    award: str
    year: int
    version: int
    criteria: dict[str, Any]
    position: int = Field(description="Where this version of the rules was published.")


class AwardIn(StrictBody):
    award: AwardKind
    year: Annotated[Year, Field(strict=True)]  # a JSON integer: not "2017", not true
    recipient_id: Id
    decision_ref: Text


class RevokeIn(StrictBody):
    reason: Reason


class SeenEligibility(BaseModel):
    """What the views said of the recipient when the award was granted."""

    eligible: bool | None = Field(description=(
        "Whether the recipient met every criterion of the rules then in force; null when the "
        "views held no facts of it. A committee may grant against the criteria: this says "
        "it did."))
    rules_version: int = Field(description="The version of the rules it was evaluated under.")
    position: int = Field(description="How far the views had read when it was evaluated.")
    criteria: list[Criterion] = Field(description=(
        "Each criterion as `GET /v1/eligibility/{award}/{year}/{candidate_id}` answered it."))


class AwardCreated(Created):
    eligibility: SeenEligibility | None = Field(description=(
        "What the views said of the recipient, kept with the grant."))


class AwardOut(BaseModel):
    id: str
    award: str
    year: int
    recipient_id: str
    recipient_kind: str
    decision_ref: str
    rules_version: int
    eligibility: SeenEligibility | None = Field(description=(
        "What the views said of the recipient when it was (last) granted; null for grants "
        "recorded before this was kept."))
    revoked: bool
    revoked_reason: str | None
    version: int


class AwardStatus(StrEnum):
    granted = "granted"
    revoked = "revoked"
    all = "all"


class AwardEntry(BaseModel):
    id: str
    award: str
    year: int
    recipient_id: str
    recipient_kind: str
    decision_ref: str = Field(description="The decision of the last grant.")
    rules_version: int = Field(description="The rules version of the last grant.")
    status: Literal["granted", "revoked"] = Field(description="`granted` (it stands) or `revoked`.")
    revoked_reason: str | None
    version: int


class Awards(BaseModel):
    """A page of awards, by year, award and recipient; `GET /v1/awards/{id}` adds what the
    views said of the recipient when it was granted (`eligibility`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "position": 812, "next_cursor": None, "items": [{
            "id": "award-2017-most_beautiful_volunteer-vol-3f1c9a2e5b7d4c6a8e0f1a2b3c4d5e6f",
            "award": "most_beautiful_volunteer", "year": 2017,
            "recipient_id": "vol-3f1c9a2e5b7d4c6a8e0f1a2b3c4d5e6f",
            "recipient_kind": "volunteer", "decision_ref": "梅文明〔2017〕12号",
            "rules_version": 1, "status": "granted", "revoked_reason": None,
            "version": 1}]}]})

    position: int = Field(description="How far the view it was read from has read.")
    items: list[AwardEntry]
    next_cursor: str | None


@router.put("/v1/award-rules/{award}/{year}", response_model=RulesOut)
def publish_rules(
    award: AwardKind, year: Year, actor: Admin, services: ServicesDep,
    criteria: Annotated[dict[str, Any], Body(
        description="A flat object of criteria. Known keys per award: " + "; ".join(
            f"{kind.value}: {', '.join(keys)}" for kind, keys in CRITERIA.items()),
        examples=[_EXAMPLE])],
) -> dict[str, Any]:
    """Publish a new version of the criteria for an award and year."""
    version, position = services.ledger.publish_award_rules(
        origin_of(actor), award.value, year, criteria)
    services.after_write(position)
    rules = services.ledger.get_award_rules(award.value, year)
    assert rules is not None
    return {"award": award.value, "year": year, "version": version,
            "criteria": rules.criteria, "position": position}


@router.get("/v1/award-rules/{award}/{year}", response_model=RulesOut)
def get_rules(award: AwardKind, year: Year, actor: EligibilityReader,
              services: ServicesDep) -> dict[str, Any]:
    """The criteria currently published for an award and year."""
    rules = services.ledger.get_award_rules(award.value, year)
    if rules is None:
        raise NotFound(f"no rules are published for {award.value} {year}")
    return {"award": award.value, "year": year, "version": rules.rules_version,
            "criteria": rules.criteria, "position": services.ledger.award_rules_position(rules)}


@router.post("/v1/awards", status_code=status.HTTP_201_CREATED, response_model=AwardCreated)
@after_schema(AwardIn, lambda ledger, v, held: ledger.grant_fields(
    v.get("award", AwardKind.best_project.value), v.get("year", 2000),
    v.get("decision_ref", SOME_TEXT), refused=held))
def grant_award(body: AwardIn, actor: CommitteeWriter, services: ServicesDep) -> dict[str, Any]:
    """Grant an award for a year to a recipient of the right kind, by a committee decision.

    The committee decides: a recipient who fails the published criteria may be granted it.
    The grant keeps what the views said of the recipient then (`eligibility`), read once the
    views hold every stored event (else 503, as the eligibility reads), so the record shows
    a grant made against the criteria, and which ones."""
    seen = cache(partial(_seen, services, body))  # read by the ledger, answered here
    written = services.ledger.grant_award(
        origin_of(actor), body.award.value, body.year, body.recipient_id, body.decision_ref,
        seen)
    return services.written(written, eligibility=seen())


def _seen(services: Services, body: AwardIn) -> dict[str, Any] | None:
    """The recipient's eligibility as the views have it, once they hold every stored event;
    None without published rules (the ledger refuses the grant then)."""
    services.caught_up()
    result = services.models.eligibility(body.award.value, body.year, body.recipient_id)
    if result is None:
        return None
    items = result["items"]
    return {"eligible": items[0]["eligible"] if items else None,
            "rules_version": result["rules_version"], "position": result["position"],
            "criteria": items[0]["criteria"] if items else []}


@router.get("/v1/awards", response_model=Awards, dependencies=[Fresh], responses=ETAGGED)
def list_awards(
    request: Request, response: Response, actor: EligibilityReader, services: ServicesDep,
    year: Annotated[Whole | None, Query(ge=2000, le=2100, description=(
        "Only the awards of this year."))] = None,
    award: Annotated[AwardKind | None, Query(description="Only this award.")] = None,
    recipient_id: Annotated[Id | None, Query(description=(
        "Only the awards to this recipient (a volunteer, unit or activity id; one that was "
        "granted nothing lists nothing)."))] = None,
    status: Annotated[AwardStatus, Query(description=(
        "`all` (default), `granted` (standing) or `revoked`."))] = AwardStatus.all,
    limit: KeyedLimit = KEYED_LIMIT,
    cursor: PageCursor = None,
) -> Any:
    """Awards granted, revoked ones included (with their `status`), by year, award and
    recipient, to those who may read one (`GET /v1/awards/{id}`). Pages are cut by key: a
    walk with `next_cursor` serves each award once."""
    query = AwardQuery(year=year, award=None if award is None else award.value,
                       recipient_id=recipient_id, status=status.value)
    read: dict[str, int] = {}

    def fetch(after: tuple[str, ...] | None, count: int) -> list[dict[str, Any]]:
        read["position"], items = services.models.award_directory(query, after, count)
        return items

    items, next_cursor = keyed(
        fetch, lambda a: (str(a["year"]), a["award"], a["recipient_id"]), limit, cursor,
        request)
    return etagged(request, response, {"position": read["position"], "items": items,
                                       "next_cursor": next_cursor})


@router.get("/v1/awards/{award_id}", response_model=AwardOut)
def get_award(award_id: str, actor: EligibilityReader, services: ServicesDep) -> dict[str, Any]:
    """An award as it stands now."""
    a = services.ledger.get_award(award_id)
    return {"id": a.id, "award": a.award, "year": a.year, "recipient_id": a.recipient_id,
            "recipient_kind": a.recipient_kind, "decision_ref": a.decision_ref,
            "rules_version": a.rules_version, "eligibility": a.eligibility,
            "revoked": not a.is_live,
            "revoked_reason": a.revoked_reason, "version": a.version}


@router.post("/v1/awards/{award_id}/revoke", response_model=Created)
@after_schema(RevokeIn, lambda ledger, v, held: ledger.revocation_reason(
    v.get("reason", SOME_TEXT), refused=held))
def revoke_award(award_id: str, body: RevokeIn, actor: CommitteeWriter,
                 services: ServicesDep) -> dict[str, Any]:
    """Revoke an award, with a reason; the grant stays in the history."""
    written = services.ledger.revoke_award(origin_of(actor), award_id, body.reason)
    return services.written(written)
