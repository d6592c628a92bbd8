"""Access tokens: issued and revoked by the office; both are recorded as events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel

from api.deps import Admin, ServicesDep, origin_of
from api.schemas import Body, Created, Id, Reason
from ledger.catalogue import Role

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


class TokenIn(Body):
    role: Role
    unit_id: Id | None = None
    label: str = ""


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
def issue_token(body: TokenIn, actor: Admin, services: ServicesDep) -> dict[str, Any]:
    """Issue a bearer token; it is shown once and stored only as a hash."""
    token, written = services.ledger.issue_token(
        origin_of(actor), body.role.value, body.unit_id, body.label)
    return {"id": written.id, "position": written.position, "token": token,
            "role": body.role.value, "unit_id": body.unit_id}


@router.get("", response_model=list[TokenOut])
def list_tokens(actor: Admin, services: ServicesDep) -> list[dict[str, Any]]:
    """Every token ever issued (never the token itself)."""
    return [{"id": t.id, "role": t.role, "unit_id": t.unit_id, "label": t.label,
             "revoked": not t.is_live} for t in services.ledger.list_tokens()]


@router.post("/{token_id}/revoke", response_model=Created)
def revoke_token(token_id: str, body: RevokeIn, actor: Admin,
                 services: ServicesDep) -> dict[str, Any]:
    """Revoke a token: it answers 401 from then on."""
    written = services.ledger.revoke_token(origin_of(actor), token_id, body.reason)
    return {"id": written.id, "position": written.position}
