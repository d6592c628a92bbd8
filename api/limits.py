"""What a request may be before any route reads it: its body's size, and HEAD for any GET.

Bodies: the largest write is a batch of 5,000 session records (about 1.5 MB of JSON), so a
body of more than 4 MiB is refused with a 413 as soon as its length is known (from its
Content-Length, or while a chunked body streams in), rather than read whole and then refused
field by field.

HEAD: FastAPI routes answer only the methods they declare; load balancers and caches ask HEAD
of what they could GET. A HEAD request runs as the GET, and uvicorn, which still sees HEAD,
sends the head of the answer without its body.

Names: a JSON object that names a member twice (`{"volunteer_id": "a", …, "volunteer_id": "b"}`)
is refused as malformed (422), not read as its last value: RFC 8259 leaves its meaning open, and
a gateway or log that read the first would see another record than the ledger stores
(`StrictBodyRoute`).

NUL: no text the ledger stores holds a NUL character (PostgreSQL's text cannot), so a path
with one names nothing (404) and a query parameter with one is malformed (422), on both
stores alike, before a store is asked to compare it (PostgreSQL refuses the statement).

And what an answer may be: one of 16 KiB or more goes gzip-compressed to a client that
accepts it (`Compression`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 4 * 1024 * 1024
COMPRESS_FROM_BYTES = 16 * 1024


class BodyTooLarge(Exception):
    pass


class BodyEncoded(Exception):
    """A body sent with a Content-Encoding (gzip, br…): the API reads only plain JSON."""


class _StrictJSONRequest(Request):
    """A request whose JSON body refuses an object that names a member twice."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()  # parsed as Starlette does (bytes: UTF-8 checked by json)
            self._json = json.loads(body, object_pairs_hook=lambda pairs: _once(pairs, body))
        return self._json


def _once(pairs: list[tuple[str, Any]], body: bytes) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    text = body.decode("utf-8", errors="replace")  # only to say where: it parsed already
    seen: set[str] = set()
    twice = ""
    for name, _ in pairs:
        if name in seen:
            twice = name
            break
        seen.add(name)
    written = json.dumps(twice, ensure_ascii=False)
    first = text.find(written)
    at = text.find(written, first + 1) if first >= 0 else -1
    # FastAPI answers a JSONDecodeError as malformed JSON (api/errors.py: 422 naming the body).
    raise json.JSONDecodeError(f"the name {written} appears twice in one object", text,
                               max(at, 0))


class StrictBodyRoute(APIRoute):
    """The route class of routers with writes: a route that reads a JSON body reads it with
    `_StrictJSONRequest`; routes without a body are left as they are (no cost on reads)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


class RequestLimits:
    """Pure ASGI middleware: a 413 for bodies over MAX_BODY_BYTES, HEAD answered as GET.

    A body that streams past the limit raises `BodyTooLarge` from the route's read; FastAPI
    turns what its body read raises into a 400, which api/errors.py answers as the 413."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            refused = _nul_refusal(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        declared = _content_length(scope)
        if declared is not None and declared > MAX_BODY_BYTES:
            from api.errors import too_large

            await too_large()(scope, receive, send)
            return
        if scope["method"] in ("GET", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # The body is read as it comes: a compressed one would be taken as undecodable JSON,
        # and a plain one labelled compressed taken as it is (bb28 F4). Its read fails instead,
        # as an oversized one does, so the caller's token is still checked first (bb29 F4);
        # every header line counts (bb29 F3: "identity" then "gzip" got through).
        encoded = [value for name, value in scope.get("headers", ()) if name == b"content-encoding"
                   and value.strip().lower() not in (b"", b"identity")]
        received = 0

        async def counted() -> Message:
            nonlocal received
            if encoded:
                raise BodyEncoded(b", ".join(encoded).decode("latin-1"))
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLarge
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _nul_refusal(scope: Scope) -> ASGIApp | None:
    """A 404 for a path with a NUL, a 422 naming a query parameter with one; else None."""
    from api.errors import problem

    if "\x00" in scope["path"]:
        return problem(404, "nothing is stored under a path with a NUL character (%00)")
    for name, value in parse_qsl(scope["query_string"].decode("latin-1"),
                                 keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            field = name.replace("\x00", "")
            return problem(422, f"query parameter {field!r} holds a NUL character",
                           errors=[{"field": field, "detail": "must not hold a NUL character"}])
    return None


class Compression(GZipMiddleware):
    """Large answers gzip-compressed for a client that accepts it (bb34 F3: an eligibility
    list of 44,000 candidates is 19.7 MB of JSON, 2 MB compressed at level 1 in about 60 ms;
    level 6 saved 30% more for four times the time). Starlette's middleware does the work,
    in a worker thread above 128 KiB; the bodies of a few hundred bytes the hot reads answer
    are never compressed. A request that does not accept gzip skips the middleware's wrapper
    altogether: it cost 7 us of the hours read's ~300."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, minimum_size=COMPRESS_FROM_BYTES, compresslevel=1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding" and accepts_gzip(value):
                    await super().__call__(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def accepts_gzip(header: bytes) -> bool:
    """Whether an Accept-Encoding value accepts gzip: named, with a weight above 0 (bb36 F10:
    `gzip;q=0`, which refuses it, was answered compressed)."""
    for coding in header.lower().split(b","):
        name, _, params = coding.partition(b";")
        if name.strip() != b"gzip":
            continue
        for param in params.split(b";"):
            key, _, weight = param.partition(b"=")
            if key.strip() == b"q":
                try:
                    return float(weight.strip()) > 0
                except ValueError:
                    return False
        return True
    return False

