"""Request and response shapes shared by several routers."""

from __future__ import annotations

import base64
import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ledger.catalogue import PROGRAMS

ProgramCode = StrEnum("ProgramCode", {code: code for code in PROGRAMS})  # type: ignore[misc]
# Ids are printable; texts may be any language but never carry control characters.
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                      pattern=r"^[^\x00-\x20\x7f]+$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500,
                                        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000,
                                          pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$")]
MAX_POSITION = 2**53
Year = Annotated[int, Field(ge=2000, le=2100)]


class Body(BaseModel):
    """A request body: unknown fields are refused, so a misspelt field is never ignored."""

    model_config = ConfigDict(extra="forbid")


class Created(BaseModel):
    id: str
    position: int = Field(description="The event position the write was stored at.")


def page_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def read_cursor(cursor: str | None) -> int:
    """The offset an opaque cursor stands for (422 when it is not one of ours)."""
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded))["o"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
    except Exception:
        raise HTTPException(422, "cursor is not a cursor this service issued") from None
    return offset


def paginate(items: list[Any], limit: int | None,
             cursor: str | None) -> tuple[list[Any], str | None]:
    """A page of a list and the cursor of the next page (None at the end)."""
    offset = read_cursor(cursor)
    if limit is None:
        return items[offset:], None
    end = offset + limit
    return items[offset:end], (page_cursor(end) if end < len(items) else None)


def etagged(request: Request, response: Response,
            body: dict[str, Any]) -> Response:
    """The body as JSON, tagged; 304 when the client already holds this representation.

    The body is serialised once, for the tag and the answer alike, so the route's
    response model documents the shape without being validated again on the way out.
    """
    content = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    tag = f'W/"{hashlib.sha256(content).hexdigest()[:32]}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    matches = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
    if tag in matches or "*" in matches:
        return Response(status_code=304, headers=headers)
    return Response(content=content, media_type="application/json", headers=headers)
