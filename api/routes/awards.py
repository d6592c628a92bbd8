"""Award rules (published per award and year, versioned) and awards granted or revoked."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, status
from pydantic import BaseModel, Field

from api.deps import Admin, CommitteeWriter, EligibilityReader, ServicesDep, origin_of
from api.limits import StrictBodyRoute
from api.schemas import Body as StrictBody
from api.schemas import Created, Id, Reason, Text, Year
from ledger.awards import CRITERIA
from ledger.catalogue import AwardKind
from ledger.errors import NotFound

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


class AwardOut(BaseModel):
    id: str
    award: str
    year: int
    recipient_id: str
    recipient_kind: str
    decision_ref: str
    rules_version: int
    revoked: bool
    revoked_reason: str | None
    version: int


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


@router.post("/v1/awards", status_code=status.HTTP_201_CREATED, response_model=Created)
def grant_award(body: AwardIn, actor: CommitteeWriter, services: ServicesDep) -> dict[str, Any]:
    """Grant an award for a year to a recipient of the right kind, by a committee decision."""
    written = services.ledger.grant_award(
        origin_of(actor), body.award.value, body.year, body.recipient_id, body.decision_ref)
    return services.written(written)


@router.get("/v1/awards/{award_id}", response_model=AwardOut)
def get_award(award_id: str, actor: EligibilityReader, services: ServicesDep) -> dict[str, Any]:
    """An award as it stands now."""
    a = services.ledger.get_award(award_id)
    return {"id": a.id, "award": a.award, "year": a.year, "recipient_id": a.recipient_id,
            "recipient_kind": a.recipient_kind, "decision_ref": a.decision_ref,
            "rules_version": a.rules_version, "revoked": not a.is_live,
            "revoked_reason": a.revoked_reason, "version": a.version}


@router.post("/v1/awards/{award_id}/revoke", response_model=Created)
def revoke_award(award_id: str, body: RevokeIn, actor: CommitteeWriter,
                 services: ServicesDep) -> dict[str, Any]:
    """Revoke an award, with a reason; the grant stays in the history."""
    written = services.ledger.revoke_award(origin_of(actor), award_id, body.reason)
    return services.written(written)
