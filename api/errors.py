"""Errors as `application/problem+json` (RFC 9457), mapped from `LedgerError` classes once, here."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import psycopg
from eventsourcing.persistence import ConnectionUnavailableError, DataError
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import after_schema
from api.deps import admit, authenticate, refused_token
from api.limits import MAX_BODY_BYTES, BodyEncoded, BodyTooLarge
from ledger.base import STORE_UNAVAILABLE
from ledger.deadlines import OutcomeUnknown
from ledger.errors import (
    AuditLogAltered,
    Conflict,
    Forbidden,
    InvalidFields,
    InvalidRequest,
    LedgerError,
    NotFound,
    StoreAltered,
    StoreBusy,
    TokenRevoked,
    VersionMismatch,
)
from ledger.settings import ConfigurationError

audit_log = logging.getLogger("vledger.audit")
api_log = logging.getLogger("vledger.api")

PROBLEM = "application/problem+json"
TYPE_BASE = "https://vledger.example/problems/"

_STATUS: list[tuple[type[LedgerError], int, str]] = [
    (InvalidRequest, 422, "Unprocessable request"),
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict with the ledger"),
    (Forbidden, 403, "Forbidden"),
    (VersionMismatch, 412, "Precondition failed"),
    (StoreBusy, 503, "Store busy"),
    (StoreAltered, 503, "Store altered"),
    (AuditLogAltered, 500, "Audit log altered"),
]

_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 412: "Precondition failed",
           413: "Content too large", 414: "URI too long", 415: "Unsupported media type",
           422: "Unprocessable request",
           503: "Service unavailable"}


class FieldError(BaseModel):
    field: str
    detail: str


def _kebab(name: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")


def _status_kind(status: int) -> str:
    """The kind of a problem that only its status describes (an unknown path, a missing
    token): named like the others (`not-found`, `unauthorized`), not `404` (bb15 F5)."""
    title = _TITLES.get(status)
    return title.lower().replace(" ", "-") if title else str(status)


def _error_kinds(cls: type[LedgerError]) -> set[str]:
    """The kinds of `cls` and its subclasses that the API answers with: those of the ledger's
    errors and of the API's own modules (the demo's, say, is the command line's alone)."""
    own = cls.__module__ == "ledger.errors" or cls.__module__.startswith("api.")
    return ({_kebab(cls.__name__)} if own else set()).union(
        *(_error_kinds(c) for c in cls.__subclasses__()))


# The kinds this module answers with besides the ledger's errors and the plain statuses.
API_KINDS = ("content-too-large", "internal-error", "misconfigured", "store-unavailable",
             "unstorable-value", "unsupported-media-type", "validation-error",
             "write-outcome-unknown")


def problem_kinds() -> list[str]:
    """Every problem `type` the API answers with, after TYPE_BASE."""
    return sorted(_error_kinds(LedgerError) - {"ledger-error"} | set(API_KINDS)
                  | {_status_kind(status) for status in _TITLES})


class Problem(BaseModel):
    """RFC 9457 problem details; `errors` names each bad field."""

    type: str  # described when the document is made, with every kind (_openapi_with_problems)
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


_DOCUMENTED = {
    "401": "No token where one is needed, or an unknown or revoked token.",
    "403": "The caller's role or unit may not do this.",
    "404": "An unknown id in the path.",
    "409": "The request contradicts other facts of the ledger.",
    "422": "The request is wrong on its own; `errors` names each bad field.",
    "503": "Nothing is wrong with the request, but it cannot be answered now: the store is "
           "busy or did not answer, or the views have not caught up (with `min_position`: "
           "not within about 2 s). Send it again after Retry-After seconds. "
           "`write-outcome-unknown`: the store stopped answering after a write was sent, "
           "which may have been stored: send it again as it was (its `source_record_id` or "
           "`Idempotency-Key` makes it count once). `store-altered`: a stored event the "
           "write would build on was changed in the database after the audit log took it in "
           "(the detail names the record and the position); nothing was written, and writes "
           "that build on it are refused until the store is restored (`vledger verify`).",
}
RETRY_AFTER = {"description": "Seconds to wait before sending the request again.",
               "schema": {"type": "integer", "minimum": 0}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    int(code): {"model": Problem, "description": text} for code, text in _DOCUMENTED.items()
}
# Every 503 a route answers carries Retry-After (/healthz and /readyz declare their own 503).
PROBLEM_RESPONSES[503]["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
# api/limits.py and the validation handler answer these before a route reads its body, so
# every operation that takes one can; added to those by the document builder below.
BODY_RESPONSES: dict[str, dict[str, Any]] = {
    "413": {"description": f"The body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB."},
    "415": {"description": "A body was sent, but not as `Content-Type: application/json`."},
}

# An operation that may answer 304 (api.schemas.etagged) is asked with this header.
IF_NONE_MATCH = {
    "name": "If-None-Match", "in": "header", "required": False,
    "description": "The ETag of a representation the client holds: 304, without a body, "
                   "while it is still the current one (tags compare weakly; `*` matches any).",
    "schema": {"type": "string"},
}


MAX_ERRORS = 100  # field errors listed in one answer, at most
STORE_ALTERED_RETRY_SECONDS = 300


def problem(status: int, detail: str, *, title: str | None = None, kind: str | None = None,
            errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem-details response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + (kind or _status_kind(status)),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        if len(errors) > MAX_ERRORS:  # bb28 F5: 50,000 unknown keys answered 5 MB of errors
            body["detail"] = (f"{len(errors):,} errors; the first {MAX_ERRORS} are listed: "
                              + "; ".join(f"{e['field']}: {e['detail']}"
                                          for e in errors[:3]) + "; …")
            errors = errors[:MAX_ERRORS]
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def problem_bytes(status: int, detail: str) -> bytes:
    """A problem-details body for an answer written below the app (api/serving.py)."""
    return orjson.dumps({"type": TYPE_BASE + _status_kind(status),
                         "title": _TITLES.get(status, "Error"), "status": status,
                         "detail": detail})


def status_of(error: LedgerError) -> tuple[int, str]:
    """The HTTP status and title that a ledger error answers with."""
    for cls, status, title in _STATUS:
        if isinstance(error, cls):
            return status, title
    return 400, "Bad request"


def problem_type(error: LedgerError) -> str:
    """The problem `type` URI of a ledger error (…/problems/overlapping-session)."""
    return TYPE_BASE + _kebab(type(error).__name__)


def field_errors(error: LedgerError, prefix: str = "") -> list[dict[str, str]] | None:
    """The `errors` of a ledger error: each field it names (after `prefix`, as `records.3.`
    for an item of a batch), in the body's order, beside the rule it breaks (None if it names
    no field)."""
    problems = error.problems if isinstance(error, InvalidFields) else [error]
    # Each item's `field` names the field, so its `detail` states only the rule.
    return [{"field": prefix + p.field, "detail": p.rule} for p in problems if p.field] or None


def _ledger_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LedgerError)
    status, title = status_of(exc)
    if isinstance(exc, AuditLogAltered):  # an alarm for whoever watches the logs, not a 4xx
        audit_log.error("audit log altered: %s", exc.message)
    # An altered store waits for an operator to restore it, not for a second to pass.
    retry = STORE_ALTERED_RETRY_SECONDS if isinstance(exc, StoreAltered) else 1
    headers = {"Retry-After": str(retry)} if status == 503 else None
    errors = field_errors(exc)
    if status == 422 and errors is None:
        errors = [{"field": "body", "detail": exc.message}]
    return problem(status, exc.described, title=title, kind=_kebab(type(exc).__name__),
                   errors=errors, headers=headers)


def _token_revoked(request: Request, exc: Exception) -> JSONResponse:
    # Answered as a token revoked before the request came is, whatever the request was.
    return _http_error(request, refused_token())


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # pydantic names the union member or the validator in the location; keep the fields.
    parts = [p for p in parts if not p.startswith("function-") and "[" not in p]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    media = _not_json(request)
    if media is not None and any(tuple(err.get("loc", ()))[:1] == ("body",) for err in found):
        # A body was sent, but not as JSON: what it holds was never read.
        return await _undecodable_body(
            request, f"must be sent as Content-Type: application/json (it was {media})",
            status=415, kind="unsupported-media-type")
    if any(err.get("type") == "json_invalid" for err in found):
        # Raised before the route's dependencies ran: the caller is not yet known.
        return await _undecodable_body(request, "must be valid JSON ({})".format(
            "; ".join(_json_error(err) for err in found)))
    errors = []
    for err in found:
        message = str(err.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if err.get("type") == "string_too_short" and (err.get("ctx") or {}).get(
                "min_length") == 1:  # text is stripped first: "   " was "at least 1 character"
            message = "must not be empty or only spaces"
        elif err.get("type") == "string_pattern_mismatch":
            message = _pattern_rule(err) or message
        errors.append({"field": _field(err.get("loc", ())), "detail": message})
    errors += _after_schema(request, exc, found)
    detail = "; ".join(f"{e['field']}: {e['detail']}" for e in errors) or "invalid request"
    return problem(422, detail, kind="validation-error", errors=errors)


def _after_schema(request: Request, exc: RequestValidationError,
                  found: Sequence[Any]) -> list[dict[str, str]]:
    """What the ledger's own rules refuse of the body's fields its schema let through
    (api/after_schema.py), for a body whose only refusals are its fields'."""
    locations = [tuple(err.get("loc", ())) for err in found]
    if not locations or any(len(loc) < 2 or loc[0] != "body" for loc in locations):
        return []
    services = getattr(request.app.state, "services", None)
    refused = [loc[1:] for loc in locations]
    return [{"field": p.field or "body", "detail": p.rule} for p in after_schema.problems(
        request.scope.get("endpoint"), getattr(services, "ledger", None), exc.body, refused)]


_REFUSED_CLASS = re.compile(r"^\^\[\^(.+)\]\+\$$")


def _pattern_rule(err: Any) -> str | None:
    """For our patterns "^[^…]+$" (characters a text may not hold), the rule and the first
    character that broke it, by code point (bb29 F5: "String should match pattern …")."""
    found = _REFUSED_CLASS.match(str((err.get("ctx") or {}).get("pattern", "")))
    value = err.get("input")
    if found is None or not isinstance(value, str):
        return None
    bad = re.search(f"[{found.group(1)}]", value)
    if bad is None:
        return None
    spaces = " " in found.group(1) or "\\x20" in found.group(1)
    return (f"must not hold control characters{' or spaces' if spaces else ''} (it holds "
            f"U+{ord(bad.group()):04X})")


def _json_error(err: Any) -> str:
    # A body that is not JSON at all is located at its character offset.
    reason = str((err.get("ctx") or {}).get("error") or err.get("msg", "invalid JSON"))
    loc = err.get("loc", ())
    return f"{reason} at character {loc[1]}" if len(loc) > 1 else reason


def _not_json(request: Request) -> str | None:
    """The media type of a request body that is not JSON (None for JSON, or for no body)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    sent = request.headers.get("content-length", "0") not in ("", "0")
    if not sent and "transfer-encoding" not in request.headers:
        return None
    return media or "not given"


async def _undecodable_body(request: Request, rule: str, status: int = 422,
                            kind: str = "validation-error", field: str = "body") -> JSONResponse:
    """A 422 (or `status`) naming the body (or `field`), once the caller would have been let
    in (else its 401 or 403)."""
    try:
        await admit(request)
    except HTTPException as refused:
        return _http_error(request, refused)
    return problem(status, f"{field}: {rule}", kind=kind,
                   errors=[{"field": field, "detail": rule}])


async def _http_error_or_unauthorized(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cause = exc.__cause__
    # FastAPI answers 400 for a body it cannot decode (not UTF-8, nested too deeply), from
    # the decoder's error; no route of ours raises a 400.
    if exc.status_code == 400 and isinstance(cause, BodyTooLarge):
        return too_large()  # counted while it streamed in (api/limits.py)
    if exc.status_code == 400 and isinstance(cause, BodyEncoded):
        return await _undecodable_body(
            request, f"must be identity or not given (it was {cause}): send the body "
            "uncompressed", status=415, kind="unsupported-media-type", field="Content-Encoding")
    if exc.status_code == 400 and isinstance(cause, (ValueError, RecursionError)):
        return await _undecodable_body(request, _decoding_rule(cause))
    # No route ran for an unknown path or method, so nothing has looked at the token yet.
    unrouted = exc.status_code == 405 or "route" not in request.scope
    if exc.status_code in (404, 405) and unrouted and "authorization" in request.headers:
        try:
            await authenticate(request)
        except HTTPException as refused:
            return _http_error(request, refused)
    return _http_error(request, exc)


def _decoding_rule(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"must be JSON text in UTF-8 ({cause.reason} at byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "must not nest arrays and objects so deeply"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        # Python reads no integer of more than 4,300 digits (bb28 F3: "ValueError" named
        # neither the value nor the rule). No field takes a number anywhere near that long.
        return "must not hold a number of more than 4,300 digits"
    return f"must be valid JSON ({type(cause).__name__})"


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, str(exc.detail), headers=headers)


def _cannot_answer(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    """The blanket statuses an operation cannot answer with (bb15 F6: /healthz declared a
    404 and a 409, and generated clients grew error branches that never run). 401 and 422
    stay everywhere: an unknown token and an unknown query parameter are refused on every
    route."""
    gone = []
    if {} in operation.get("security", []):  # public: nobody is refused for their role
        gone.append("403")
    if "{" not in path:  # 404 is an unknown id in the path
        gone.append("404")
    cursor = any(p.get("name") == "cursor" for p in operation.get("parameters", []))
    if method == "get" and not cursor:  # reads contradict nothing, but an old cursor's list
        gone.append("409")
    return gone


def _openapi_with_problems(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with every 4xx/5xx answer documented as problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes, tags=app.openapi_tags)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    operations = ((path, method, op) for path, item in schema.get("paths", {}).items()
                  for method, op in item.items())
    for path, method, operation in operations:
        responses = operation.setdefault("responses", {})
        for code in _cannot_answer(path, method, operation):
            responses.pop(code, None)
        if "requestBody" in operation:
            for code, response in BODY_RESPONSES.items():
                responses.setdefault(code, dict(response))
        if "304" in responses:
            operation.setdefault("parameters", []).append(IF_NONE_MATCH)
        for code, response in responses.items():
            if code >= "400":
                response["content"] = {PROBLEM: {"schema": problem_ref}}
        operation["responses"] = dict(sorted(responses.items()))
    # Listed when the document is made, every module that defines an error imported by then
    # (api/schemas.py's ListChanged is imported after this one).
    schemas = schema["components"]["schemas"]
    schemas["Problem"]["properties"]["type"]["description"] = (
        f"{TYPE_BASE} followed by one of: {', '.join(problem_kinds())}. A client may switch "
        "on it; `title` and `detail` are for people")
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    _json_schema_bounds(schema)
    _examples_with_nulls(schemas)
    app.openapi_schema = schema
    return schema


def _examples_with_nulls(schemas: dict[str, Any]) -> None:
    """Each model's examples as the model gives them: FastAPI writes the document without its
    nulls (`exclude_none`), the examples' too, so an example lost its required nullable
    members (`next_cursor: null`) and failed its own schema (bb37 F3)."""
    def models(cls: type[BaseModel]) -> Iterator[type[BaseModel]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from models(sub)

    for model in models(BaseModel):
        extra = model.model_config.get("json_schema_extra")
        if (model.__module__.startswith("api.") and isinstance(extra, dict)
                and "examples" in extra and model.__name__ in schemas):
            schemas[model.__name__]["examples"] = extra["examples"]


# pydantic writes the bounds of a whole number read through a validator (api/schemas.Whole)
# under their Python names, which JSON Schema does not know: clients saw no bounds at all on
# 32 parameters (bb37 F2).
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _json_schema_bounds(node: Any) -> None:
    """Rename numeric bounds written under pydantic's names, everywhere in the document."""
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            for python, json_name in _BOUNDS.items():
                if isinstance(node.get(python), int | float):
                    node[json_name] = node.pop(python)
        for value in node.values():
            _json_schema_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _json_schema_bounds(value)


def _misconfigured(request: Request, exc: Exception) -> JSONResponse:
    """The server's configuration no longer serves this request (the KEK file lost a KEK the
    store names, while it ran): a 503 that says so, logged for the operator, not a bare 500
    (bb38 F5). Nothing was written."""
    api_log.error("503 misconfigured for %s %s: %s", request.method, request.url.path, exc)
    return problem(503, f"the server cannot serve this request as it is configured now: "
                        f"{exc}; nothing was written", kind="misconfigured",
                   headers={"Retry-After": "60"})


def _store_busy(_: Request, exc: Exception) -> JSONResponse:
    # The store's connections were all taken for longer than the library waits.
    return problem(503, f"the store is busy; try again shortly ({exc})", kind="store-busy",
                   headers={"Retry-After": "1"})


def too_large() -> JSONResponse:
    limit = MAX_BODY_BYTES // (1024 * 1024)
    return problem(413, f"the request body is larger than {limit} MiB", kind="content-too-large",
                   errors=[{"field": "body", "detail": f"must be at most {limit} MiB"}],
                   headers={"Connection": "close"})


def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The store did not answer (a restart, a dropped connection, a cancelled statement): the
    # request changed nothing it did not commit, and may be sent again. The client learns the
    # kind of error; the log says what it was (a full disk, a read-only file and a stopped
    # server answered alike, and the log did not tell them apart: bb13 F6).
    api_log.warning("503 store-unavailable for %s %s: %s: %s", request.method,
                    request.url.path, type(exc).__name__, " ".join(str(exc).split()))
    if isinstance(exc, OutcomeUnknown):
        return problem(503, OUTCOME_UNKNOWN, kind="write-outcome-unknown",
                       headers={"Retry-After": "1"})
    return problem(503, f"the store is unavailable; try again shortly ({type(exc).__name__})",
                   kind="store-unavailable", headers={"Retry-After": "1"})


# The store stopped answering after the write went out (ledger/deadlines.OutcomeUnknown).
OUTCOME_UNKNOWN = (
    "the store stopped answering after this write was sent: it may or may not have been "
    "stored, and the server does not send it again by itself. Send the same request again "
    "after Retry-After: a session with the same source_record_id, or a registration with the "
    "same Idempotency-Key, that was stored is answered 200 with its id and is not stored "
    "twice; a registration sent without a key would be registered again, so look it up "
    "first")


def _store_refused(field: str) -> Callable[[Request, Exception], JSONResponse]:
    """A 422 for a value the store refused (a NUL in text, on PostgreSQL) that validation let
    through: in a write's body (the library's DataError), or in a read of the views
    (psycopg's own, for a value api/limits.py did not see)."""

    def refused(_: Request, exc: Exception) -> JSONResponse:
        return problem(422, f"the store cannot hold a value of this request: {exc}",
                       kind="unstorable-value", errors=[{"field": field, "detail": str(exc)}])

    return refused


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on an app and document them in its OpenAPI."""
    app.openapi = lambda: _openapi_with_problems(app)  # type: ignore[method-assign]
    app.add_exception_handler(LedgerError, _ledger_error)
    app.add_exception_handler(TokenRevoked, _token_revoked)
    app.add_exception_handler(ConfigurationError, _misconfigured)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error_or_unauthorized)
    app.add_exception_handler(DataError, _store_refused("body"))
    app.add_exception_handler(psycopg.DataError, _store_refused("request"))
    app.add_exception_handler(ConnectionUnavailableError, _store_busy)
    for unavailable in STORE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _store_unavailable)
    # Anything else is our fault: still a problem document (Starlette's outermost middleware
    # answers with it, then raises the error again for the server to log with its traceback).
    app.add_exception_handler(Exception, _server_error)


def _server_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.scope.get("vledger.request_id")
    detail = "the server failed to answer this request; it is logged"
    if request_id:
        detail += f" under request id {request_id}"
    # The server closes the connection after an error it logs with its traceback: saying so
    # spares a keep-alive client a reset on its next request (bb28 F1).
    headers = {"Connection": "close"}
    if request_id:
        headers["X-Request-ID"] = request_id
    return problem(500, detail, kind="internal-error", headers=headers)
