"""Access tokens: issued and revoked by the office; both are recorded as events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, StringConstraints

from api.after_schema import SOME_TEXT, after_schema
from api.deps import Admin, AuditReader, ServicesDep, origin_of
from api.limits import StrictBodyRoute
from api.schemas import Body, Created, Id, Reason, Whole, paginate
from ledger.catalogue import Role
from ledger.text import MAX_LABEL

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], route_class=StrictBodyRoute)


class TokenIn(Body):
    role: Role
    unit_id: Id | None = None
    label: Annotated[str, StringConstraints(max_length=MAX_LABEL)] = ""


class TokenIssued(Created):
    token: str
    role: str
    unit_id: str | None


class TokenOut(BaseModel):
    id: str
    role: str
    unit_id: str | None
    label: str
    revoked: bool


class RevokeIn(Body):
    reason: Reason


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenIssued)
@after_schema(TokenIn, lambda ledger, v, held: ledger.token_fields(
    v.get("role", Role.auditor.value), v.get("unit_id"), v.get("label", ""), refused=held))
def issue_token(body: TokenIn, actor: Admin, services: ServicesDep) -> dict[str, Any]:
    """Issue a bearer token; it is shown once and stored only as a hash."""
    token, written = services.ledger.issue_token(
        origin_of(actor), body.role.value, body.unit_id, body.label)
    return services.written(written, token=token, role=body.role.value, unit_id=body.unit_id)


class TokenPage(BaseModel):
    items: list[TokenOut]
    next_cursor: str | None


@router.get("", response_model=TokenPage)
def list_tokens(request: Request, actor: AuditReader, services: ServicesDep,
                limit: Annotated[Whole | None, Query(ge=1, le=1000)] = None,
                cursor: str | None = None) -> dict[str, Any]:
    """Every token ever issued, oldest first (never the token itself). Auditors read it too:
    who holds access is part of what they check."""
    tokens = [{"id": t.id, "role": t.role, "unit_id": t.unit_id, "label": t.label,
               "revoked": not t.is_live} for t in services.ledger.list_tokens()]
    items, next_cursor = paginate(tokens, limit, cursor, request)
    return {"items": items, "next_cursor": next_cursor}


@router.post("/{token_id}/revoke", response_model=Created)
@after_schema(RevokeIn, lambda ledger, v, held: ledger.revocation_reason(
    v.get("reason", SOME_TEXT), refused=held))
def revoke_token(token_id: str, body: RevokeIn, actor: Admin,
                 services: ServicesDep) -> dict[str, Any]:
    """Revoke a token: it answers 401 from then on."""
    return services.written(services.ledger.revoke_token(origin_of(actor), token_id, body.reason))
