"""Volunteers: register, look up (masked), update, transfer, deregister, insure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api.after_schema import SOME_DAY, SOME_TEXT, after_schema
from api.deps import HoursReader, RecorderWriter, ServicesDep, origin_of
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
    Year,
    not_modified,
    recognised_response,
    version_tagged,
)
from ledger.base import Recognised
from ledger.calendar import MIN_YEAR
from ledger.catalogue import Gender, PoliticalStatus, Role
from ledger.privacy import id_birth, id_birth_digits, masked

router = APIRouter(prefix="/v1/volunteers", tags=["volunteers"], route_class=StrictBodyRoute)

Phone = Annotated[str, StringConstraints(strip_whitespace=True,
                                          pattern=r"^\+?[0-9][0-9\- ]{4,19}$")]
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _resident_id(value: str) -> str:
    """A resident identity number (GB 11643-1999): a real date of birth, and on the 18-digit
    form its check character (ISO 7064 MOD 11-2), so a mistyped digit is caught here."""
    if id_birth(value) is None:
        raise ValueError(f"digits 7 to {len(value) - 4} must be a date of birth, not "
                         f"{id_birth_digits(value)}")
    if len(value) == 18:
        total = sum(int(d) * w for d, w in zip(value[:17], _WEIGHTS, strict=True))
        check = "10X98765432"[total % 11]
        if value[17].upper() != check:
            raise ValueError(f"the check character must be {check} for these 17 digits")
    return value.upper()


IdNumber = Annotated[str, StringConstraints(strip_whitespace=True,
                                             pattern=r"^(\d{17}[\dXx]|\d{15})$"),
                     AfterValidator(_resident_id)]
Skill = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Personal(Body):
    birth_date: Day | None = None
    gender: Gender | None = None
    political_status: PoliticalStatus | None = None
    phone: Phone | None = None
    id_number: IdNumber | None = None
    skills: list[Skill] | None = Field(default=None, max_length=50)


class VolunteerIn(Personal):
    name: Text
    home_unit_id: Id
    registered_on: Day

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "林小梅", "home_unit_id": "unit-…", "registered_on": "2017-03-01",
        "gender": "female", "political_status": "league_member", "phone": "13805981234"}]})


class VolunteerChange(Personal, Change):
    name: Text | None = None


class VolunteerCreated(Created):
    volunteer_number: str


class TransferIn(Body):
    to_unit_id: Id
    effective_on: Day


class DeregistrationIn(Body):
    deregistered_on: Day
    reason: Reason


class InsuranceIn(Body):
    # strict: a JSON integer, not "2017", not true
    year: Annotated[Year, Field(strict=True, description=(
        f"The year covered: from {MIN_YEAR} to next year in district time (a cover may be "
        "bought ahead for next year; a later year is a 422 naming `year`)."))]
    policy_ref: Text
    insurer: Text


class VolunteerOut(BaseModel):
    id: str
    volunteer_number: str
    name: str
    home_unit_id: str = Field(description=(
        "The unit the volunteer registered with; a transfer does not change it."))
    current_unit_id: str = Field(description=(
        "The unit the volunteer belongs to now: that of their latest membership (a transfer "
        "is recorded on or after its `effective_on`, so it is today's unit in district time)."))
    registered_on: str
    deregistered_on: str | None
    memberships: list[dict[str, str]]
    personal: dict[str, Any] | None = Field(description=(
        "Personal data, phone and id number masked; null for a recorder of another unit than "
        "the volunteer's current one (a clerk records their service at its activities, and "
        "needs no more than who they are)"))
    insured_years: list[int]
    trainings: list[dict[str, Any]]
    version: int


def _given(body: Personal) -> dict[str, Any]:
    """The fields the body gives, null ones too, enumerations as their values."""
    data = body.model_dump(exclude_unset=True)
    return {k: (v.value if hasattr(v, "value") else v) for k, v in data.items()}


REGISTRATION = ("name", "home_unit_id", "registered_on")  # the rest of a registration is personal


def _personal(body: Personal) -> dict[str, Any]:
    return {k: v for k, v in _given(body).items() if k != "name" and v is not None}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=VolunteerCreated,
             responses=recognised_response(VolunteerCreated))
@after_schema(VolunteerIn, lambda ledger, v, held: ledger.volunteer_fields(
    v.get("name", SOME_TEXT), v.get("home_unit_id", SOME_TEXT), v.get("registered_on", SOME_DAY),
    {k: x for k, x in v.items() if k not in REGISTRATION and x is not None}, refused=held))
def register_volunteer(body: VolunteerIn, actor: RecorderWriter, services: ServicesDep,
                       key: IdempotencyKey, response: Response) -> dict[str, Any]:
    """Register a volunteer with a home unit; returns the id and the district volunteer number."""
    personal = _personal(body)
    for field in ("home_unit_id", "registered_on"):
        personal.pop(field, None)
    outcome = services.registered(
        actor, key, response, lambda: services.ledger.register_volunteer(
            origin_of(actor), body.name, body.home_unit_id, body.registered_on, **personal),
        "vol", lambda: services.ledger.volunteer_fields(
            body.name, body.home_unit_id, body.registered_on, personal))
    if isinstance(outcome, Recognised):
        number = services.ledger.get_volunteer(outcome.id).volunteer_number
        return services.written(outcome, volunteer_number=number)
    written, number = outcome
    return services.written(written, volunteer_number=number)


@router.get("/{volunteer_id}", response_model=VolunteerOut,
            responses=version_tagged("volunteer"))
def get_volunteer(volunteer_id: str, actor: HoursReader, services: ServicesDep,
                  request: Request, response: Response) -> Any:
    """A volunteer's record; phone and id number are masked, and a recorder sees personal
    data only of its own unit's volunteers (bb14 F2). Tagged with its version for If-Match
    (every recorded session moves it too)."""
    v = services.ledger.get_volunteer(volunteer_id)
    if (held := not_modified(request, response, v.version)) is not None:
        return held
    theirs = actor.role is not Role.recorder or actor.unit_id == v.current_unit_id
    return {
        "id": v.id, "volunteer_number": v.volunteer_number, "name": v.name,
        "home_unit_id": v.home_unit_id, "current_unit_id": v.current_unit_id,
        "registered_on": v.registered_on, "deregistered_on": v.deregistered_on,
        "memberships": [{"effective_on": d, "unit_id": u} for d, u in v.memberships],
        "personal": masked(services.ledger.personal_of(v)) if theirs else None,
        "insured_years": sorted(v.insured_years),
        "trainings": v.trainings, "version": v.version,
    }


@router.patch("/{volunteer_id}", response_model=Created, responses=IF_MATCH_RESPONSES)
@after_schema(VolunteerChange, lambda ledger, v, held: ledger.volunteer_changes(
    dict(v), refused=held)[0].raise_found())
def update_volunteer(volunteer_id: str, body: VolunteerChange, actor: RecorderWriter,
                     services: ServicesDep, expected: IfMatch) -> dict[str, Any]:
    """Correct or complete a volunteer's name and personal data: the fields given change,
    those left out stay as they are; `"phone": null` or `"id_number": null` withdraws it
    (no other field may be null; `"skills": []` clears the skills). A withdrawn or replaced
    phone or id number is erased: every event that held it reads `"[erased]"` from then on.
    With `If-Match` (the `ETag` its GET answered), a volunteer changed since is 412."""
    written = services.ledger.update_volunteer(origin_of(actor), volunteer_id, _given(body),
                                               expected_version=expected)
    return services.written(written)


@router.post("/{volunteer_id}/transfers", status_code=status.HTTP_201_CREATED,
             response_model=Created)
@after_schema(TransferIn, lambda ledger, v, held: ledger.transfer_checks(
    v.get("effective_on", SOME_DAY), held).raise_found())
def transfer_volunteer(volunteer_id: str, body: TransferIn, actor: RecorderWriter,
                       services: ServicesDep) -> dict[str, Any]:
    """Move a volunteer to another unit from `effective_on` (it may lie in the past).

    The `members` basis then credits the volunteer's sessions from that date to the new
    unit, those already recorded included. A transfer on the same `effective_on` as an
    earlier one replaces it: that is how a mistaken transfer is corrected (its sessions move
    with it; both stay in the history). To the unit the volunteer already belongs to on that
    date: 409 `already-member`.
    """
    written = services.ledger.transfer_volunteer(
        origin_of(actor), volunteer_id, body.to_unit_id, body.effective_on)
    return services.written(written)


@router.post("/{volunteer_id}/deregistration", response_model=Created)
@after_schema(DeregistrationIn, lambda ledger, v, held: ledger.deregistration_checks(
    v.get("deregistered_on", SOME_DAY), v.get("reason", SOME_TEXT), held).raise_found())
def deregister_volunteer(volunteer_id: str, body: DeregistrationIn, actor: RecorderWriter,
                         services: ServicesDep) -> dict[str, Any]:
    """End a volunteer's registration; their recorded hours stay on the record.

    Service and training before `deregistered_on` may still be recorded later; on or after
    it they are refused (409). So the date must come after the last service and training on
    record (else 409 naming them: correct or void such a session first).
    """
    written = services.ledger.deregister_volunteer(
        origin_of(actor), volunteer_id, body.deregistered_on, body.reason)
    return services.written(written)


@router.post("/{volunteer_id}/insurance", status_code=status.HTTP_201_CREATED,
             response_model=Created)
@after_schema(InsuranceIn, lambda ledger, v, held: ledger.insurance_fields(
    v.get("year", MIN_YEAR), v.get("policy_ref", SOME_TEXT), v.get("insurer", SOME_TEXT),
    refused=held))
def insure_volunteer(volunteer_id: str, body: InsuranceIn, actor: RecorderWriter,
                     services: ServicesDep, response: Response) -> dict[str, Any]:
    """Record a volunteer's personal accident insurance for a year (plan measure 5).

    The year is this year or an earlier one, or next year for a cover bought ahead; a year
    after next year is refused (422 naming `year`), as is a year the volunteer is insured
    for already."""
    written = services.ledger.insure_volunteer(
        origin_of(actor), volunteer_id, body.year, body.policy_ref, body.insurer)
    return services.written(written)
