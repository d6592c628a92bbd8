"""Request and response shapes shared by several routers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, NamedTuple, Self, TypeVar

import orjson
from fastapi import Depends, Header, Query, Request, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from api.lists import StoredLists
from ledger.catalogue import PROGRAMS
from ledger.errors import Conflict, InvalidField

T = TypeVar("T")
ProgramCode = StrEnum("ProgramCode", {code: code for code in PROGRAMS})  # type: ignore[misc]
# Ids are printable; texts may be any language but never carry control characters.
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                      pattern=r"^[^\x00-\x20\x7f]+$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500,
                                        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000,
                                          pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$")]
MAX_POSITION = 2**53
# What a cache is told of an answer that depends on the caller's token (masked or not).
PER_TOKEN = {"Cache-Control": "no-cache", "Vary": "Authorization"}
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _written_as(kind: type, pattern: re.Pattern[str], rule: str) -> BeforeValidator:
    """Accept a value of `kind`, or text matching `pattern` for pydantic to parse; refuse
    anything else (pydantic's lax mode would take a number of seconds as a time)."""
    def check(value: Any) -> Any:
        if isinstance(value, kind) or (isinstance(value, str) and pattern.fullmatch(value)):
            return value
        raise ValueError(rule)

    return BeforeValidator(check)


_FINER_THAN_MICROSECONDS = re.compile(r"\.\d{7}")


def _to_the_microsecond(value: Any) -> Any:
    """Refuse digits finer than a microsecond, which a datetime cannot hold: dropped in
    silence, a session of 9 min 59.9999991 s counted 10 minutes, and one 100 ns over 24 h was
    accepted as exactly 24 h (bb16 F2)."""
    if isinstance(value, str) and _FINER_THAN_MICROSECONDS.search(value):
        raise ValueError("must not be more precise than a microsecond (at most 6 digits "
                         "after the seconds)")
    return value


# Times are RFC 3339 text with an offset; dates are YYYY-MM-DD text.
Instant = Annotated[AwareDatetime, BeforeValidator(_to_the_microsecond), _written_as(
    datetime, _RFC3339, "must be an RFC 3339 date-time with an offset, written as text "
    "(e.g. 2017-03-05T09:00:00+08:00)")]
Day = Annotated[date, _written_as(
    date, _DAY, "must be a date written as text, YYYY-MM-DD (e.g. 2017-03-05)")]
Year = Annotated[int, Field(ge=2000, le=2100)]
# A minus sign is let through to the route's own bound, which names the rule (bb34 F6: a
# `limit` of -1 was told "zero or more", where a limit is one or more).
_DIGITS = re.compile(r"-?[0-9]+")


def _digits(value: Any) -> Any:
    """A whole number in a path or query is digits only: pydantic's lax mode would read
    "1.0", " 1" and "+1" as 1, so a malformed parameter would answer as if it were well
    formed."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number written in digits only (e.g. 42)")
    return value


# A path or query parameter that is a whole number (the bounds are the route's own).
Whole = Annotated[int, BeforeValidator(_digits)]


class Body(BaseModel):
    """A request body: unknown fields are refused, so a misspelt field is never ignored."""

    model_config = ConfigDict(extra="forbid")


class Change(Body):
    """A PATCH body: the fields it gives change, the others stay as they are. One that gives
    no field is refused (422 naming the body): it would answer as if something changed."""

    @model_validator(mode="after")
    def _gives_a_field(self) -> Self:
        if not self.model_fields_set:
            fields = ", ".join(type(self).model_fields)
            raise ValueError(f"no field to change was given (give at least one of: {fields})")
        return self


class Created(BaseModel):
    id: str
    position: int = Field(description="The event position the write was stored at.")


# Query parameters that do not change which list a cursor walks.
_NOT_THE_LIST = frozenset({"cursor", "limit", "min_position"})


def _list_of(request: Request, same: Mapping[str, str] | None = None) -> str:
    """A short fingerprint of the list a request asks for: its path and its other parameters
    (`same`: a parameter's value as the route reads it, where two spellings name one list)."""
    same = same or {}
    params = sorted((k, same.get(k, v)) for k, v in request.query_params.multi_items()
                    if k not in _NOT_THE_LIST)
    return hashlib.sha256(repr((request.url.path, params)).encode()).hexdigest()[:12]


# Cursors are sealed with a secret of the API (derived from the checkpoint signing key, so
# every worker shares it and it outlives a restart): an edited cursor is refused, not read as
# another offset (bb24 F3). A process without one (an app never started) uses its own.
_FALLBACK_SECRET = secrets.token_bytes(32)
_MAC_BYTES = 16


def _cursor_secret(request: Request) -> bytes:
    services = getattr(request.app.state, "services", None)
    return getattr(services, "cursor_secret", b"") or _FALLBACK_SECRET


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    """The bytes of unpadded base64url text written as `_b64` writes them (no other spelling
    of the same bytes: a cursor is taken only as it was issued)."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError(text)
    return raw


def page_cursor(request: Request, offset: int, list_of: str, digest: str | None = None,
                position: int | None = None, after: Sequence[str] | None = None) -> str:
    """An opaque cursor: the next offset in the list `list_of` names, with the version
    (`digest`) and `position` of a ranked list's first page, or the key of the last item
    served (`after`, for a list read by key: `keyed`), sealed."""
    found: dict[str, Any] = {"o": offset, "q": list_of}
    if digest is not None:
        found["d"], found["p"] = digest, position
    if after is not None:
        found["a"] = list(after)
    raw = json.dumps(found, separators=(",", ":")).encode()
    mac = hmac.new(_cursor_secret(request), raw, hashlib.sha256).digest()[:_MAC_BYTES]
    return f"{_b64(raw)}.{_b64(mac)}"


class Cursor(NamedTuple):
    """What a cursor this service issued says: where the next page starts, and for a ranked
    list the version and position of its first page."""

    offset: int
    digest: str | None = None
    position: int | None = None
    after: tuple[str, ...] | None = None


def read_cursor(request: Request, cursor: str | None, list_of: str) -> Cursor:
    """What an opaque cursor says; 422 naming `cursor` when it is not one this service issued
    (or was altered), or was issued for another list (other path, filters or period)."""
    if not cursor:
        return Cursor(offset=0)
    try:
        body, mac = cursor.split(".")
        raw = _unb64(body)
        expected = hmac.new(_cursor_secret(request), raw, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(_unb64(mac), expected):
            raise ValueError
        found = json.loads(raw)
        offset, digest, position = found["o"], found.get("d"), found.get("p")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError
        if digest is not None and not (isinstance(digest, str) and isinstance(position, int)):
            raise ValueError
        after = found.get("a")
        if after is not None and not (isinstance(after, list) and after
                                      and all(isinstance(a, str) for a in after)):
            raise ValueError
    except Exception:
        raise InvalidField("cursor is not a cursor this service issued", "cursor") from None
    if found.get("q") != list_of:
        raise InvalidField("cursor was issued for another list (other path or parameters); "
                           "start again without a cursor", "cursor")
    return Cursor(offset=offset, digest=digest, position=position,
                  after=None if after is None else tuple(after))


def paginate(items: list[Any], limit: int | None, cursor: str | None,
             request: Request) -> tuple[list[Any], str | None]:
    """A page of a list that only grows at its end (a history, the tokens), and the cursor
    of the next page (None at the end): an offset walks it without repeats or gaps."""
    list_of = _list_of(request)
    offset = read_cursor(request, cursor, list_of).offset
    if limit is None:
        return items[offset:], None
    end = offset + limit
    return items[offset:end], (page_cursor(request, end, list_of) if end < len(items) else None)


def paged(fetch: Callable[[int, int], list[Any]], limit: int, cursor: str | None,
          request: Request) -> tuple[list[Any], str | None]:
    """`paginate` for a list read from the store a page at a time: `fetch(offset, count)`
    answers at most `count` items from `offset` on."""
    list_of = _list_of(request)
    offset = read_cursor(request, cursor, list_of).offset
    items = fetch(offset, limit + 1)  # one more: whether a next page is there
    return items[:limit], (page_cursor(request, offset + limit, list_of)
                           if len(items) > limit else None)


def keyed(fetch: Callable[[tuple[str, ...] | None, int], list[T]],
          key: Callable[[T], Sequence[str]], limit: int, cursor: str | None,
          request: Request, same: Mapping[str, str] | None = None
          ) -> tuple[list[T], str | None]:
    """`paged` for a list read from the store in the order of a unique key, whose items may
    leave it between pages (a volunteer transferred out of the unit listed, or deregistered):
    `fetch(after, count)` answers at most `count` items whose key comes after `after` (None:
    from the start), and the cursor names the last key served, not an offset, so every item
    in the list throughout a walk is served exactly once (an offset would skip one for each
    item that left before it). `same`: as for `_list_of`."""
    list_of = _list_of(request, same)
    after = read_cursor(request, cursor, list_of).after
    items = fetch(after, limit + 1)  # one more: whether a next page is there
    if len(items) <= limit:
        return items, None
    page = items[:limit]
    return page, page_cursor(request, 0, list_of, after=key(page[-1]))


# The parameters of a list paged by key (`keyed`).
KEYED_LIMIT = 100
KeyedLimit = Annotated[Whole, Query(ge=1, le=5000, description=(
    f"Items a page holds at most (default {KEYED_LIMIT}); `next_cursor` names the next page."))]
PageCursor = Annotated[str | None, Query(description=(
    "The `next_cursor` of the page before, with the same other parameters."))]


class ListChanged(Conflict):
    """A ranked list changed between its pages, and this process no longer holds the
    version the first page came from."""


class _Snapshots:
    """Ranked lists (rankings, bulletins, eligibility) as they were when a first page of them
    was served, by digest, so that the pages after it come from the same version."""

    ITEMS = 200_000  # kept at most, across lists (an eligibility list may hold thousands)

    def __init__(self) -> None:
        self._kept: OrderedDict[str, tuple[int, list[Any]]] = OrderedDict()
        self._items = 0
        self._lock = threading.Lock()

    def keep(self, digest: str, position: int, items: list[Any]) -> None:
        with self._lock:
            if digest not in self._kept:
                self._items += len(items)
            self._kept[digest] = (position, items)
            self._kept.move_to_end(digest)
            while self._items > self.ITEMS and len(self._kept) > 1:
                self._items -= len(self._kept.popitem(last=False)[1][1])

    def find(self, digest: str) -> tuple[int, list[Any]] | None:
        with self._lock:
            return self._kept.get(digest)


_SNAPSHOTS = _Snapshots()
_CONTEXT = "_list_context"  # the key of a kept list's first element, when it has a context


def _digest(items: list[Any]) -> str:
    return hashlib.sha256(orjson.dumps(items, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def paginate_ranked(items: list[Any], position: int, limit: int | None, cursor: str | None,
                    request: Request,
                    context: dict[str, Any] | None = None) -> tuple[list[Any], str | None, int]:
    """A page of a list whose order can change with any event (units by rank, candidates),
    its next cursor, and the position it answers for. Blocking (it may read and write the
    store): a coroutine calls `paginate_ranked_async`.

    An offset alone would repeat or skip items when a session moves a unit between two pages.
    The cursor carries a digest of the whole list its first page came from: a later page is
    cut from the same list, the current one when it is unchanged, else the version kept when
    the first page was served, in this process's memory or in the store for any process
    (api/lists.py, for an hour). When neither holds it, 409 `list-changed`: read the list
    again from its first page.

    `context`: what the answer says of the whole list beside its items (eligibility's
    `rules_version`), part of its version: a later page cut from a kept version sets it,
    in place, to what it was for the first page.
    """
    if limit is None and cursor is None:
        return items, None, position
    list_of = _list_of(request)
    read = read_cursor(request, cursor, list_of)
    # The context rides as the list's first element, in memory and in the store alike.
    whole = items if context is None else [{_CONTEXT: context}, *items]
    if read.digest is not None and read.digest != _digest(whole):
        kept = _kept(read.digest, request)
        if kept is None:
            raise ListChanged(
                f"the list changed after its first page was read (it now answers for position "
                f"{position}); read it again from the first page, without a cursor")
        whole = kept
    return _cut(whole, read, position, limit, request, list_of, context)


def kept_page(limit: int | None, cursor: str | None, request: Request,
              context: dict[str, Any] | None = None
              ) -> tuple[list[Any], str | None, int] | None:
    """A later page of a ranked list cut from the version its first page came from, when this
    process or the store still keeps it, without working the current list out first (None
    otherwise: `paginate_ranked` then compares it with the current one). The answer is the
    same either way: an unchanged list is its kept version. An eligibility list of 44,000
    candidates took 1.6 s to work out again after each write, for every page of a walk
    (bb34 F1)."""
    if cursor is None:
        return None
    list_of = _list_of(request)
    read = read_cursor(request, cursor, list_of)
    if read.digest is None or read.position is None:
        return None
    whole = _kept(read.digest, request)
    if whole is None:
        return None
    return _cut(whole, read, read.position, limit, request, list_of, context)


def _kept(digest: str, request: Request) -> list[Any] | None:
    """The version of a list kept under `digest`, in this process's memory or in the store."""
    kept = _SNAPSHOTS.find(digest)
    stored: StoredLists | None = getattr(request.app.state, "lists", None)
    if kept is None and stored is not None:
        kept = stored.find(digest)
    return None if kept is None else kept[1]


def _cut(whole: list[Any], read: Cursor, position: int, limit: int | None, request: Request,
         list_of: str, context: dict[str, Any] | None) -> tuple[list[Any], str | None, int]:
    """The page `read` asks of a version of a list (`whole`, with its context first if it has
    one), its next cursor, and the position it answers for; a first page that leaves more
    keeps the version, for the pages after it."""
    if read.position is not None:
        # The first page's, as its cursor says (with its digest, always): a version kept by
        # content is the same list at every position it was read at, and may have been kept
        # with another (bb27 F1).
        position = read.position
    if context is not None and whole and isinstance(whole[0], dict) and _CONTEXT in whole[0]:
        context.update(whole[0][_CONTEXT])
        items = whole[1:]
    else:
        items = whole
    offset, digest = read.offset, read.digest
    end = len(items) if limit is None else offset + limit
    if end >= len(items):
        return items[offset:], None, position
    if digest is None:
        digest = _digest(whole)
        stored: StoredLists | None = getattr(request.app.state, "lists", None)
        if _SNAPSHOTS.find(digest) is None and stored is not None:
            stored.keep(digest, position, whole)  # once per version and process
        _SNAPSHOTS.keep(digest, position, whole)
    return items[offset:end], page_cursor(request, end, list_of, digest, position), position


async def paginate_ranked_async(items: list[Any], position: int, limit: int | None,
                                cursor: str | None,
                                request: Request) -> tuple[list[Any], str | None, int]:
    """`paginate_ranked` for a coroutine: a whole list goes without a thread."""
    if limit is None and cursor is None:
        return items, None, position
    return await run_in_threadpool(paginate_ranked, items, position, limit, cursor, request)


_TAG_HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {"description": "A weak tag of the representation, leaving out its `position`; "
                            "send it back as If-None-Match to be answered 304 while it holds.",
             "required": True, "schema": {"type": "string"}},
    "Cache-Control": {"description": "`no-cache`: a cache asks again before it reuses a copy.",
                      "required": True, "schema": {"type": "string"}},
    "Vary": {"description": "`Authorization`: what a caller may read depends on its token.",
             "required": True, "schema": {"type": "string"}},
}
# The answers of a route that returns `etagged(...)`, for its `responses=`.
ETAGGED: dict[int | str, dict[str, Any]] = {
    200: {"headers": _TAG_HEADERS},
    304: {"description": "Not Modified: the If-None-Match header holds the tag of the current "
                         "representation; no body.", "headers": _TAG_HEADERS},
}


def etagged(request: Request, response: Response,
            body: dict[str, Any]) -> Response:
    """The body as JSON, tagged; 304 when the client already holds this representation.

    The body is serialised once, for the answer and (but for its `position`) for the tag, so
    the route's response model documents the shape without being validated again on the way
    out. The tag is weak, and leaves out the `position` the views had read to: an answer that
    only says the views have read further (a write elsewhere in the ledger) is the same
    answer, and a client that holds it is answered 304. Its copy's `position` is lower than
    the current one, which is still true of what it holds.
    """
    content = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    if "position" in body:
        tagged = orjson.dumps({k: v for k, v in body.items() if k != "position"},
                              option=orjson.OPT_SORT_KEYS)
    else:
        tagged = content
    tag = f'W/"{hashlib.sha256(tagged).hexdigest()[:32]}"'
    # What a caller may read depends on its token (masking, roles): a shared cache keys on it.
    headers = {"ETag": tag, **PER_TOKEN}
    if _held(request, tag):
        return Response(status_code=304, headers=headers)
    return Response(content=content, media_type="application/json", headers=headers)


def _held(request: Request, tag: str) -> bool:
    """Whether the request's If-None-Match names `tag`, compared weakly (RFC 9110 §13.1.2:
    W/"x" and "x" are the same tag), or is `*`."""
    held = {t.strip().removeprefix("W/") for t in
            request.headers.get("if-none-match", "").split(",")}
    return tag.removeprefix("W/") in held or "*" in held


def json_answer(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """The body as JSON, serialised once: the route's response model documents its shape
    without validating every item of a long list again on the way out."""
    return Response(content=orjson.dumps(body), media_type="application/json",
                    headers=headers)


_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


def version_tag(version: int) -> str:
    """The strong entity tag of an aggregate's version, as GET answers it and If-Match sends."""
    return f'"{version}"'


def not_modified(request: Request, response: Response, version: int) -> Response | None:
    """Tag a GET's answer with the thing's version; a 304 if the client holds that version."""
    tag = response.headers["ETag"] = version_tag(version)
    return Response(status_code=304, headers={"ETag": tag}) if _held(request, tag) else None


def _if_match(request: Request, if_match: Annotated[str | None, Header(
        description='The version its GET answered in `ETag` ("3"): the change is refused '
                    "with 412 if the thing has changed since. `*` or no header: any version.",
        examples=['"3"'])] = None) -> int | None:
    """The version a write's If-Match names, or None for any (no header, or `*`)."""
    if_match = ", ".join(request.headers.getlist("if-match")) or if_match  # lines are a list
    if if_match is None or if_match.strip() == "*":
        return None
    tags = [t.strip() for t in if_match.split(",") if t.strip()]
    found = [_ENTITY_TAG.fullmatch(t) for t in tags]
    rule = None
    if not tags or not all(found):
        rule = 'must be * or one entity tag such as "3"'
    elif len(tags) > 1:
        rule = "must name one version (one entity tag), not several"
    elif found[0] and found[0].group(1):
        rule = ("is a weak tag, which never matches a write's precondition (RFC 9110 §13.1.1);"
                ' send the strong tag the GET answered, such as "3"')
    elif found[0] and not re.fullmatch(r"[1-9][0-9]{0,17}", found[0].group(2)):
        rule = 'is not a version tag of this resource: send the ETag its GET answered, as "3"'
    if rule is not None:
        raise InvalidField(f"If-Match {rule}", "If-Match")
    assert found[0] is not None
    return int(found[0].group(2))


IfMatch = Annotated[int | None, Depends(_if_match)]


def version_tagged(kind: str) -> dict[int | str, dict[str, Any]]:
    """The 200 and 304 of a GET that tags the thing's version (`not_modified`) for If-Match."""
    etag = {"ETag": {
        "description": f'The {kind}\'s version as a strong tag ("3"): send it back as '
                       f"`If-Match` with a change to refuse it if the {kind} changed since, "
                       "or as `If-None-Match` for a 304 while it has not.",
        "schema": {"type": "string"}}}
    return {200: {"headers": etag},
            304: {"description": f"The {kind} is still at the version `If-None-Match` named.",
                  "headers": etag}}


# A write that takes If-Match: 412 when the thing is no longer at that version (its
# problem+json body is documented with every 4xx: errors._openapi_with_problems).
IF_MATCH_RESPONSES: dict[int | str, dict[str, Any]] = {412: {
    "description": "`If-Match` named a version the thing is no longer at: nothing was "
                   "written; read it again."}}


_KEY = re.compile(r"[\x21-\x7e]{1,200}")


def _idempotency_key(request: Request, idempotency_key: Annotated[str | None, Header(
        description="Any string of 1 to 200 visible ASCII characters the client chooses for "
                    "this request (a UUID will do). Sent again with the same request, say after "
                    "a lost answer, it answers 200 with what the first send registered instead "
                    "of registering it twice; with another request, 422. Keys belong to the "
                    "token that sends them.", examples=["5f0c6a8e-3b1d-4d7e-9a55-2c1f0e4b7a10"],
        )] = None) -> str | None:
    """The request's idempotency key, or None."""
    if len(request.headers.getlist("idempotency-key")) > 1:  # bb20 F3: the second was dropped
        raise InvalidField("Idempotency-Key must be sent once, with one key", "Idempotency-Key")
    if idempotency_key is not None and not _KEY.fullmatch(idempotency_key):
        raise InvalidField("Idempotency-Key must be 1 to 200 visible ASCII characters",
                           "Idempotency-Key")
    return idempotency_key


IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]


def recognised_response(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The 200 of a registration sent again with its idempotency key."""
    return {200: {"model": model, "description": "Sent again with the same `Idempotency-Key`: "
                  "what the first send registered (its id and position); nothing new."}}


def hours_field() -> Any:
    """An hours figure's field, saying how it is rounded (bb15 F4)."""
    return Field(description=(
        "total_minutes / 60, rounded down to the hundredth: never more than was served "
        "(5,999 minutes are 99.98 h, short of the first star's 100 h)"))
