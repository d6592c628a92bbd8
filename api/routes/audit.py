"""What auditors read: a volunteer's history as of a moment, the event feed, Merkle proofs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PUBLIC, AuditReader, Fresh, MaybeActor, ServicesDep
from api.errors import Problem
from api.schemas import (
    ETAGGED,
    MAX_POSITION,
    PER_TOKEN,
    Instant,
    Whole,
    etagged,
    json_answer,
    paged,
)
from ledger.catalogue import Role
from projections.history import event_feed, volunteer_history

router = APIRouter(tags=["audit"])
HISTORY_PAGE = 1000  # events of a history page when no `limit` is asked


class Entry(BaseModel):
    """One event as the history shows it (projections/entries.py), personal data masked
    unless the caller may see it."""

    position: int = Field(description="Where the event is stored; increases, may skip.")
    type: str = Field(description="Aggregate and event, e.g. `ServiceSession.Recorded`.")
    originator_id: str = Field(description=(
        "The id of the aggregate it belongs to: for a session's events, the session (which "
        "of two alike sessions a correction or void concerns)."))
    recorded_at: str = Field(json_schema_extra={"format": "date-time"},
                             description="When the ledger recorded it, RFC 3339.")
    actor: dict[str, Any] | None = Field(
        description="Who recorded it: `id`, `role`, and for a recorder its `unit_id`.")
    source: str | None = Field(description="Through what: api, cli, import:<batch>, …")
    valid_time: dict[str, str] | None = Field(
        description="The served interval a session event states (`started_at`, `ended_at`).")
    data: dict[str, Any] = Field(description=(
        "The event's own fields. A phone or id number that was withdrawn or replaced since "
        "reads as `\"[erased]\"`, whoever asks: its key is deleted (crypto-shredding), the "
        "stored event is unchanged."))


class FeedEntry(Entry):
    """One event as the feed shows it: the history's fields and what its audit leaf holds."""

    version: int = Field(description="The aggregate's version the event made.")
    topic: str = Field(description="The stored event's topic.")
    state: str | None = Field(description=(
        "The stored bytes (standard base64); phone and id numbers in them are sealed. Null "
        "where an event stored before sealing holds a number in plain text and this caller "
        "sees numbers masked."))


class History(BaseModel):
    volunteer_id: str
    as_of: str | None
    events: list[Entry]
    next_cursor: str | None = None


class Feed(BaseModel):
    events: list[FeedEntry]
    next_after: int | None


_HASH = r"^[0-9a-f]{64}$"
_HASHES = "SHA-256 hashes, 64 lowercase hex digits each"


class Checkpoint(BaseModel):
    """A signed statement of the root of the Merkle tree over the ledger's events."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "tree_size": 6,
        "root_hash": "ac7672c9cb86075e88eefef289b8a71bb85a811ae31ca57f6fa2c6942cb6ac28",
        "signed_at": "2026-11-30T12:46:13+00:00",
        "signature": "C2PJgHjEVAhqRaK5jhLl5M73h41fUVl6wSYjtLPk/21OPStrtGKNWxCW0ScawlooeYxuavn"
                     "r31N8zIbrF6/JCg==",
        "key_id": "6c45aa04b8f3f3a8",
    }]})

    tree_size: int = Field(ge=0, description="Events (leaves) in the tree, in position order.")
    root_hash: str = Field(pattern=_HASH, description="The tree's root (RFC 9162 MTH), in hex.")
    signed_at: str = Field(json_schema_extra={"format": "date-time"},
                           description="When it was signed: RFC 3339, UTC, to the second.")
    signature: str = Field(description="Ed25519 over the checkpoint's lines, standard base64.")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$",
                        description="The first 16 hex digits of SHA-256 of the raw public key.")


class Inclusion(BaseModel):
    """An RFC 9162 inclusion proof: the audit path from one event's leaf to a tree's root."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "position": 3, "leaf_index": 2, "tree_size": 6,
        "leaf_hash": "367c1651cc9658ee029d1cd7d67da1bf7b385308308f3855d87a02435d16ed9d",
        "hashes": ["7f3b9caaefafcab7a986a71ca660d82e9d6f106d625ce919e43809ba1f833472",
                   "b87f66436695ec5374e550c600aa8868d11385dc03fe06acf3ae7784c57e196f",
                   "60e5ba41d7315cabc68b3b8ccaec35c3b7f40bd2a24017dd829d4ab7c0da9780"],
    }]})

    position: int = Field(description="The event's position, as asked.")
    leaf_index: int = Field(ge=0, description="The event's leaf, counted from 0.")
    tree_size: int = Field(ge=1, description="The size of the tree the path leads to.")
    leaf_hash: str = Field(pattern=_HASH, description="The event's leaf hash, in hex.")
    hashes: list[str] = Field(description=f"The audit path, leaf to root: {_HASHES}.")


class Consistency(BaseModel):
    """An RFC 9162 consistency proof: the tree of `first` leaves is a prefix of `second`'s."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "first": 3, "second": 6,
        "hashes": ["367c1651cc9658ee029d1cd7d67da1bf7b385308308f3855d87a02435d16ed9d",
                   "7f3b9caaefafcab7a986a71ca660d82e9d6f106d625ce919e43809ba1f833472",
                   "b87f66436695ec5374e550c600aa8868d11385dc03fe06acf3ae7784c57e196f",
                   "60e5ba41d7315cabc68b3b8ccaec35c3b7f40bd2a24017dd829d4ab7c0da9780"],
    }]})

    first: int = Field(ge=1, description="The size of the earlier tree, as asked.")
    second: int = Field(ge=1, description="The size of the later tree, as asked.")
    hashes: list[str] = Field(description=f"The consistency proof: {_HASHES}.")


# Events changed or removed in the store after they were logged are never signed or proved.
ALTERED: dict[int | str, dict[str, Any]] = {500: {
    "model": Problem,
    "description": "`audit-log-altered`: the audit log no longer extends the last published "
                   "checkpoint (or the one kept beside the signing key, which the store no "
                   "longer holds), or (inclusion) the event proved is no longer the one the "
                   "log took in: changed or removed in the database; the detail says what "
                   "changed where the log's own hashes tell, and `vledger verify` names it.",
}}


@router.get("/v1/volunteers/{volunteer_id}/history", response_model=History,
            dependencies=[Fresh], responses=ETAGGED)
def history(volunteer_id: str, request: Request, response: Response, actor: AuditReader,
            services: ServicesDep, as_of: Instant | None = None,
            limit: Annotated[Whole | None, Query(
                ge=1, le=10_000, description=f"Events per page (default {HISTORY_PAGE}).")] = None,
            cursor: str | None = None) -> Any:
    """Every event that touched a volunteer's record, as the ledger held them at `as_of`, in
    pages of `limit` (default 1,000: a volunteer serving daily for decades has tens of
    thousands, bb23), the next one named by `next_cursor`."""
    services.ledger.require_volunteer(volunteer_id)
    services.caught_up()
    page, next_cursor = paged(lambda offset, count: volunteer_history(
        services.models.store, services.ledger.recorder, volunteer_id, as_of,
        unmasked=actor.role in (Role.admin, Role.auditor), offset=offset, limit=count),
        limit or HISTORY_PAGE, cursor, request)
    return etagged(request, response, {
        "volunteer_id": volunteer_id, "as_of": as_of.isoformat() if as_of else None,
        "events": page, "next_cursor": next_cursor})


@router.get("/v1/events", response_model=Feed)
def events(actor: AuditReader, services: ServicesDep,
           after: Annotated[Whole, Query(ge=0, le=MAX_POSITION)] = 0,
           limit: Annotated[Whole, Query(ge=1, le=10_000)] = 1000) -> Any:
    """The ledger's events after a position, in order, for downstream systems.

    Positions increase in commit order, so a reader that asks again with `after` set to the
    last position it saw misses nothing. They may skip a number (on PostgreSQL, rarely: a
    write that failed inside the database after it took one), so a jump is not a lost event.
    `next_after` is the `after` of the next page while pages are full, and null on the last
    one."""
    page = event_feed(services.ledger.recorder, after, limit,
                      unmasked=actor.role in (Role.admin, Role.auditor),
                      store=services.models.store)
    next_after = page[-1]["position"] if len(page) == limit else None
    # Masked or not by the caller's token: a shared cache must not serve it to another
    # (bb36 F10), as every other token-gated read says.
    return json_answer({"events": page, "next_after": next_after}, headers=PER_TOKEN)


@router.get("/v1/audit/checkpoint", response_model=Checkpoint, openapi_extra=PUBLIC,
            responses={**ETAGGED, **ALTERED})
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

    Each checkpoint extends the last one the store published, and the last one kept beside
    the signing key: if the audit log no longer does (a rebuild of it over events changed or
    removed in the database, a subtree hash changed, the published checkpoint deleted or
    replaced, or another signing key), none is signed: 500, `audit-log-altered`, whose detail
    says which where the root's own O(log n) hashes tell, else names both causes. A
    checkpoint is made from the leaf hashes the log took in when each event was first read,
    not by reading every event again: an event changed in the database after that is found
    by `vledger verify` (every event against its leaf) and refused by its inclusion proof
    (500), not by the next checkpoint.
    """
    services.caught_up()
    return etagged(request, response, services.auditor.checkpoint())


@router.get("/v1/audit/public-key", response_class=PlainTextResponse, openapi_extra=PUBLIC)
def public_key(actor: MaybeActor, services: ServicesDep) -> str:
    """The Ed25519 public key (PEM) that signs checkpoints."""
    return services.auditor.key.public_key_pem()


@router.get("/v1/audit/inclusion", response_model=Inclusion, responses=ALTERED)
def inclusion(
    actor: AuditReader, services: ServicesDep,
    position: Annotated[Whole, Query(ge=1, le=MAX_POSITION)],
    tree_size: Annotated[Whole | None, Query(ge=1, le=MAX_POSITION)] = None,
) -> dict[str, Any]:
    """The audit path that proves the event at `position` is in the tree of `tree_size`."""
    services.caught_up()
    size = tree_size if tree_size is not None else services.auditor.checkpoint()["tree_size"]
    result: dict[str, Any] = services.auditor.inclusion(position, size,
                                                        services.ledger.recorder)
    services.auditor.check_leaf(services.ledger.recorder, position, result["leaf_hash"])
    return result


@router.get("/v1/audit/consistency", response_model=Consistency)
def consistency(actor: AuditReader, services: ServicesDep,
                first: Annotated[Whole, Query(ge=1, le=MAX_POSITION)],
                second: Annotated[Whole, Query(ge=1, le=MAX_POSITION)]) -> dict[str, Any]:
    """The proof that the tree of size `first` is a prefix of the tree of size `second`."""
    services.caught_up()
    result: dict[str, Any] = services.auditor.consistency(first, second)
    return result
