"""What a request may be before any route reads it: its body's size, and HEAD for any GET.

Bodies: the largest write is a batch of 5,000 session records (about 1.5 MB of JSON), so a
body of more than 4 MiB is refused with a 413 as soon as its length is known (from its
Content-Length, or while a chunked body streams in), rather than read whole and then refused
field by field.

HEAD: FastAPI routes answer only the methods they declare; load balancers and caches ask HEAD
of what they could GET. A HEAD request runs as the GET, and uvicorn, which still sees HEAD,
sends the head of the answer without its body.

NUL: no text the ledger stores holds a NUL character (PostgreSQL's text cannot), so a path
with one names nothing (404) and a query parameter with one is malformed (422), on both
stores alike, before a store is asked to compare it (PostgreSQL refuses the statement).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 4 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


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
        received = 0

        async def counted() -> Message:
            nonlocal received
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
