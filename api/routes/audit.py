"""What auditors read: a volunteer's history as of a moment, the event feed, Merkle proofs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from api.deps import PUBLIC, AuditReader, Fresh, MaybeActor, ServicesDep
from api.schemas import MAX_POSITION, Instant, etagged, paginate
from ledger.catalogue import Role
from projections.history import event_feed, volunteer_history

router = APIRouter(tags=["audit"])


class History(BaseModel):
    volunteer_id: str
    as_of: str | None
    events: list[dict[str, Any]]
    next_cursor: str | None = None


class Feed(BaseModel):
    events: list[dict[str, Any]]
    next_after: int | None


@router.get("/v1/volunteers/{volunteer_id}/history", response_model=History,
            dependencies=[Fresh])
def history(volunteer_id: str, request: Request, response: Response, actor: AuditReader,
            services: ServicesDep, as_of: Instant | None = None,
            limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
            cursor: str | None = None) -> Any:
    """Every event that touched a volunteer's record, as the ledger held them at `as_of`."""
    services.ledger.get_volunteer(volunteer_id)
    services.caught_up()
    events = volunteer_history(services.models.store, services.ledger.recorder, volunteer_id,
                               as_of, unmasked=actor.role in (Role.admin, Role.auditor))
    page, next_cursor = paginate(events, limit, cursor, request)
    return etagged(request, response, {
        "volunteer_id": volunteer_id, "as_of": as_of.isoformat() if as_of else None,
        "events": page, "next_cursor": next_cursor})


@router.get("/v1/events", response_model=Feed)
def events(actor: AuditReader, services: ServicesDep,
           after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
           limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
    """The ledger's events after a position, in order, for downstream systems.

    Positions increase in commit order, so a reader that asks again with `after` set to the
    last position it saw misses nothing. They may skip a number (on PostgreSQL, rarely: a
    write that failed inside the database after it took one), so a jump is not a lost event.
    `next_after` is the `after` of the next page while pages are full, and null on the last
    one."""
    page = event_feed(services.ledger.recorder, after, limit,
                      unmasked=actor.role in (Role.admin, Role.auditor))
    next_after = page[-1]["position"] if len(page) == limit else None
    return {"events": page, "next_after": next_after}


@router.get("/v1/audit/checkpoint", openapi_extra=PUBLIC)
def checkpoint(request: Request, response: Response, actor: MaybeActor,
               services: ServicesDep) -> Any:
    """The signed root of the Merkle tree over every event (RFC 9162).

    To check it without our code: `signature` (standard base64) is an Ed25519 signature, by
    the key of `GET /v1/audit/public-key`, over exactly these ASCII bytes, each line ending in
    a line feed: `vledger-checkpoint`, `tree_size` in decimal, `root_hash` (64 lowercase hex
    digits), `signed_at` (RFC 3339, UTC). `key_id` is the first 16 hex digits of SHA-256 over
    the 32-byte raw public key. A leaf is SHA-256(0x00 ‖ input) and a node SHA-256(0x01 ‖ left
    ‖ right), as RFC 9162 §2.1; a leaf's input is 0x01, the position (8 bytes, big-endian),
    then the originator id, the version (8 bytes), the topic and the stored state, each text
    preceded by its length in 4 bytes (big-endian), as `GET /v1/events` and the inclusion
    proof name them. `tree_size` counts events (leaves), in position order; positions may skip
    numbers, so it can be below the last position.

    Each checkpoint extends the last one the store published; if the stored events no longer
    do (changed or removed in the database), none is signed: 500, `audit-log-altered`.
    """
    services.caught_up()
    return etagged(request, response, services.auditor.checkpoint())


@router.get("/v1/audit/public-key", response_class=PlainTextResponse, openapi_extra=PUBLIC)
def public_key(actor: MaybeActor, services: ServicesDep) -> str:
    """The Ed25519 public key (PEM) that signs checkpoints."""
    return services.auditor.key.public_key_pem()


@router.get("/v1/audit/inclusion")
def inclusion(
    actor: AuditReader, services: ServicesDep,
    position: Annotated[int, Query(ge=1, le=MAX_POSITION)],
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_POSITION)] = None,
) -> dict[str, Any]:
    """The audit path that proves the event at `position` is in the tree of `tree_size`."""
    services.caught_up()
    size = tree_size if tree_size is not None else services.auditor.checkpoint()["tree_size"]
    result: dict[str, Any] = services.auditor.inclusion(position, size)
    services.auditor.check_leaf(services.ledger.recorder, position, result["leaf_hash"])
    return result


@router.get("/v1/audit/consistency")
def consistency(actor: AuditReader, services: ServicesDep,
                first: Annotated[int, Query(ge=1, le=MAX_POSITION)],
                second: Annotated[int, Query(ge=1, le=MAX_POSITION)]) -> dict[str, Any]:
    """The proof that the tree of size `first` is a prefix of the tree of size `second`."""
    services.caught_up()
    result: dict[str, Any] = services.auditor.consistency(first, second)
    return result
