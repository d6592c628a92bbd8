"""Access tokens (stored only as hashes) and what each role may do."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from eventsourcing.domain import event

from ledger.aggregate import LedgerAggregate
from ledger.catalogue import Role
from ledger.errors import Conflict, Forbidden, InvalidField
from ledger.provenance import Actor

# The actor id of the server's VLEDGER_ADMIN_TOKEN (api/deps.py): no grant, never revocable.
BOOTSTRAP_ADMIN_ID = "admin-token"


def token_digest(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe verifier."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_for(token: str) -> str:
    return token_id_of(token_digest(token))


def token_id_of(digest: str) -> str:
    """The id of the grant of a token with this digest (`token_digest`)."""
    return f"token-{digest[:24]}"


def new_token() -> str:
    return f"vl_{secrets.token_urlsafe(32)}"


class AccessToken(LedgerAggregate):
    """A bearer token's grant: role, unit scope, label; never the token itself."""

    id: str  # chosen by the ledger, see ledger.aggregate


    @event("Issued")
    def __init__(self, digest: str, role: str, unit_id: str | None, label: str,
                 actor: dict[str, Any], source: str) -> None:
        self.digest = digest
        self.role = role
        self.unit_id = unit_id
        self.label = label
        self.revoked_reason: str | None = None

    @property
    def is_live(self) -> bool:
        return self.revoked_reason is None

    def actor(self) -> Actor:
        return Actor(id=self.id, role=Role(self.role), unit_id=self.unit_id)

    def revoke(self, reason: str, meta: dict[str, Any]) -> None:
        """Withdraw the token; it answers 401 from then on."""
        if not self.is_live:
            raise Conflict(f"token {self.id} was already revoked")
        self._revoked(reason=reason, **meta)

    @event("Revoked")
    def _revoked(self, reason: str, actor: dict[str, Any], source: str) -> None:
        self.revoked_reason = reason


def require_role(actor: Actor, *roles: Role) -> None:
    """Refuse an actor whose role is not among those allowed (admin always is)."""
    if actor.role is Role.admin or actor.role in roles:
        return
    allowed = ", ".join(["admin", *(r.value for r in roles)])
    raise Forbidden(f"the {actor.role.value} role may not do this (allowed: {allowed})")


def require_unit(actor: Actor, unit_id: str, what: str) -> None:
    """Refuse a recorder acting for a unit other than its own."""
    if actor.role is Role.admin:
        return
    if actor.role is Role.recorder and actor.unit_id == unit_id:
        return
    if actor.role is Role.recorder:
        raise Forbidden(f"a recorder of unit {actor.unit_id} may not act on {what} of {unit_id}")
    raise Forbidden(f"the {actor.role.value} role may not do this")


def check_token_grant(role: Role, unit_id: str | None) -> None:
    """A recorder token is bound to one unit; other roles are district-wide."""
    if role is Role.recorder and not unit_id:
        raise InvalidField("a recorder token needs the unit it records for", "unit_id")
    if role is not Role.recorder and unit_id:
        raise InvalidField("only recorder tokens are bound to a unit", "unit_id")
