"""Dependencies shared by the routes: the services, the caller, read-your-writes."""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_args, get_origin

from fastapi import Depends, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.schemas import Whole
from ledger import Actor, Ledger, Origin, Role, SessionWritten, Settings, Written
from ledger.access import BOOTSTRAP_ADMIN_ID, token_digest, token_id_of
from ledger.base import Recognised
from ledger.errors import InvalidField, InvalidFields, ViewsBehind
from ledger.guards import Grant, rely_on_grant
from projections.audit import Auditor
from projections.models import ReadModels

T = TypeVar("T")
ADMIN_TOKEN_ACTOR = Actor(id=BOOTSTRAP_ADMIN_ID, role=Role.admin)
log = logging.getLogger("vledger.api")


class Grants:
    """The tokens this process has seen presented: each one's actor (None once revoked) and
    the version of its grant when it was loaded.

    Loading a grant replays its events in a worker thread (about 0.25 ms, and it halved the
    hours read's throughput under 50 clients). A request instead reads the grant's stored
    version, one primary-key lookup run on the event loop (`ViewStore.read`), and takes the
    remembered actor while that version is unchanged. A revocation, made by any process, adds
    an event and so a version: the next request loads the grant again and is refused. A token
    with no grant at all is refused after the lookup alone. Used from the event loop only.

    A request is admitted with the grant at the version it was live at, and its writes rely
    on that version inside their inserts (ledger/guards.py), so one admitted just before a
    revocation but stored after it is refused too.
    """

    LIMIT = 4096

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[Grant, Actor | None]] = OrderedDict()

    async def actor(self, token: str, ledger: Ledger,
                    models: ReadModels) -> tuple[Actor, Grant] | None:
        """The live token's actor and its grant at the version read; None when unknown or
        revoked."""
        digest = token_digest(token)  # hashed once per request: the grant's id comes from it
        grant_id = token_id_of(digest)
        rows = await models.store.read(ledger.token_version_statement, (grant_id,))
        version = rows[0][0] if rows else None
        if version is None:
            return None
        seen = self._seen.get(digest)
        if seen is None or seen[0].version != int(version):
            found = await run_in_threadpool(ledger.token_grant, token)
            if found is None:
                return None
            seen = (Grant(grant_id, found[1]), found[0])
            self._seen[digest] = seen
            while len(self._seen) > self.LIMIT:
                self._seen.popitem(last=False)
        self._seen.move_to_end(digest)
        grant, actor = seen
        return None if actor is None else (actor, grant)


@dataclass
class Services:
    """What one process keeps for its whole life: one ledger, its views, the auditor."""

    settings: Settings
    ledger: Ledger
    models: ReadModels
    auditor: Auditor
    # Seals list cursors (api/schemas.py), the same in every worker and across restarts.
    cursor_secret: bytes = b""
    grants: Grants = field(default_factory=Grants)

    def after_write(self, position: int) -> None:
        """In inline mode the views catch up at once, so the writer reads its own write.

        The write is stored by then, so it is answered whatever the views do: they may be
        held by a rebuild or a stalled worker past the wait (the client can still read with
        `min_position`), or fail on an event (`/readyz` says so). Answering an error instead
        would have the client send again a write that has no key to be recognised by.
        """
        if not self.settings.inline_projections:
            return
        try:
            self.models.wait_for(position, self.settings.read_wait_seconds)
        except Exception:
            log.exception("the views did not catch up with position %s after a write", position)

    def caught_up(self) -> None:
        """Views holding every event stored when asked, within the read wait; else 503
        (`ViewsBehind`), not a wait for as long as a rebuild or a stalled worker holds them."""
        head = self.ledger.head()
        if not self.models.wait_for(head, self.settings.read_wait_seconds, verify=True,
                                    fold=self.settings.inline_projections):
            # Who keeps the views decides what to look for (bb19: in worker mode the message
            # sent the operator after a rebuild when the worker had stopped).
            keeper = views_keeper(self.settings)
            raise ViewsBehind(
                f"the views have read to position {self.models.position()} of {head} "
                f"({keeper}); try again shortly")

    def registered(self, actor: Actor, key: str | None, response: Response,
                   register: Callable[[], T], prefix: str,
                   fields: Callable[[], dict[str, Any]]) -> T | Recognised:
        """Run a registration (a use case that makes something new, with ids of `prefix`,
        whose first event records `fields` of the request) under the caller's idempotency key,
        if any: sent again, it is Recognised and answers 200."""
        outcome = self.ledger.keyed(None if key is None else f"{actor.id}\x00{key}", register,
                                    prefix, fields)
        if isinstance(outcome, Recognised):
            response.status_code = 200
        return outcome

    def written(self, write: Written | SessionWritten | Recognised,
                **extra: Any) -> dict[str, Any]:
        """A write's answer (its id, any `extra` fields, its position), once the views have
        caught up with it."""
        self.after_write(write.position)
        return {"id": write.id, **extra, "position": write.position}


# The dependencies below are `async def` although the ledger is synchronous: FastAPI runs a
# plain `def` dependency in a worker thread, and four thread hops cost more than the read a
# route makes. Whatever may block (a token lookup, a wait for the views) still goes to a thread.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False, description="A token from `vledger tokens create`.")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def current_actor(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor | None:
    """The caller, or None for the public; an unknown or revoked token is refused everywhere."""
    actor = await _authenticate(request, services, credentials)
    refuse_unknown_query(request)
    return actor


async def _authenticate(request: Request, services: Services,
                        credentials: HTTPAuthorizationCredentials | None) -> Actor | None:
    if credentials is None:
        if request.headers.get("authorization"):
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        return None
    token = credentials.credentials.strip()
    admin = services.settings.admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return ADMIN_TOKEN_ACTOR
    admitted = await services.grants.actor(token, services.ledger, services.models)
    if admitted is None:
        raise refused_token()
    actor, grant = admitted
    rely_on_grant(grant)  # for the rest of this request: its route's writes
    request.state.actor = actor
    return actor


def refused_token() -> HTTPException:
    """The answer to a revoked token: whether it was revoked before the request came or
    while its write waited to be stored (ledger.errors.TokenRevoked)."""
    return _unauthorized("unknown or revoked token")


_QUERY_OF: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
# Taken by every read (API.md: a read after a write passes its position); a route that does not
# declare it reads what is always current (the event store itself) or catches up by itself.
_EVERYWHERE = frozenset({"min_position"})


def refuse_unknown_query(request: Request) -> None:
    """A 422 for query parameters the matched route does not take, or a single-valued one
    given twice, once the caller is known.

    Ignored, a misspelt `?yaer=2017` answered the all-time ranking as if it were 2017's; a
    committee would not notice. Every parameter the route declares is known: its own and its
    dependencies' (`min_position`, `limit`, `cursor`). Names that begin with `_` are left to
    the client (cache busters such as `?_=1700000000`).
    """
    route = request.scope.get("route")
    if route is None or not request.scope.get("query_string"):
        return
    known = _QUERY_OF.get(id(route))
    if known is None:
        known = _QUERY_OF[id(route)] = _query_names(getattr(route, "dependant", None))
    names, repeatable = known
    given = [name for name, _ in request.query_params.multi_items()]
    problems = [InvalidField(
        f"{name} is not a query parameter of this route (it takes: "
        f"{', '.join(sorted(names)) or 'none'})", name)
        for name in sorted(set(given)) if name not in names and name not in _EVERYWHERE
        and not name.startswith("_")]
    problems += [InvalidField(f"{name} was given {given.count(name)} times; give it once", name)
                 for name in sorted(set(given))
                 if given.count(name) > 1 and name in names and name not in repeatable]
    value = request.query_params.get("min_position")
    if "min_position" not in names and value is not None and not (
            value.isascii() and value.isdigit() and int(value) <= 2**53):
        problems.append(InvalidField("min_position must be a whole number from 0 to 2^53",
                                     "min_position"))
    if problems:
        raise InvalidFields(problems)


def _query_names(dependant: Any) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameters a route takes, and those of them that may repeat (lists)."""
    names: set[str] = set()
    repeatable: set[str] = set()
    pending = [dependant] if dependant is not None else []
    while pending:
        current = pending.pop()
        for param in current.query_params:
            names.add(param.alias)
            annotation = param.field_info.annotation
            kinds = [get_origin(a) for a in (get_args(annotation) or (annotation,))]
            if {get_origin(annotation), *kinds} & {list, set, tuple, frozenset}:
                repeatable.add(param.alias)
        pending.extend(current.dependencies)
    return frozenset(names), frozenset(repeatable)


MaybeActor = Annotated[Actor | None, Depends(current_actor)]
# The dependencies that authenticate (and admit roles): `current_actor` and each `needs()`.
_GUARDS: set[Any] = {current_actor}


def needs(*roles: Role) -> Any:
    """A dependency that admits the admin and the given roles, 401 without a token, else 403.

    It authenticates by itself rather than through `current_actor`: FastAPI solves each level
    of dependencies anew per request, and the authenticated routes are the hot ones.
    """

    async def check(
        request: Request,
        services: ServicesDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        actor = await _authenticate(request, services, credentials)
        if actor is None:
            raise _unauthorized("this route needs a bearer token")
        if actor.role is not Role.admin and actor.role not in roles:
            allowed = ", ".join(["admin", *(r.value for r in roles)])
            raise HTTPException(403, f"the {actor.role.value} role may not use this route "
                                     f"(allowed: {allowed})")
        refuse_unknown_query(request)
        return actor

    _GUARDS.add(check)
    return Depends(check)


async def authenticate(request: Request) -> None:
    """Refuse an unknown or revoked token (401), as every route does; used where no route ran."""
    services = await get_services(request)
    await _authenticate(request, services, await _bearer(request))


async def admit(request: Request) -> None:
    """Run the matched route's own guard alone: its 401 for the caller, or its 403 for the role.

    FastAPI reads a JSON body before it solves any dependency, so a body it cannot decode
    would otherwise be refused (422) before the caller is known.
    """
    guard = _guard_of(getattr(request.scope.get("route"), "dependant", None))
    if guard is not None:
        services = await get_services(request)
        await guard(request, services, await _bearer(request))


def _guard_of(dependant: Any) -> Any:
    for sub in getattr(dependant, "dependencies", ()):
        found = sub.call if sub.call in _GUARDS else _guard_of(sub)
        if found is not None:
            return found
    return None


def origin_of(actor: Actor) -> Origin:
    return Origin(actor=actor, source="api")


Admin = Annotated[Actor, needs()]
HoursReader = Annotated[Actor, needs(Role.recorder, Role.committee, Role.auditor)]
EligibilityReader = Annotated[Actor, needs(Role.committee, Role.auditor)]
AuditReader = Annotated[Actor, needs(Role.auditor)]
CommitteeWriter = Annotated[Actor, needs(Role.committee)]
RecorderWriter = Annotated[Actor, needs(Role.recorder)]


async def read_your_writes(
    request: Request,
    services: ServicesDep,
    min_position: Annotated[Whole | None, Query(
        ge=0, le=2**53,
        description=("Wait (about 2 s at most) until the views have read this position (a "
                     "write's `position`): a 503 with Retry-After if they do not get there in "
                     "time, a 422 if it is past the ledger's last event."),
    )] = None,
) -> None:
    """Wait for the views to reach the caller's last write, or answer 503 with Retry-After.

    FastAPI solves a route's own `dependencies` before its parameters' guard, so the caller is
    admitted first here: an unknown token is a 401, not an answer about the ledger's head.

    A position beyond the ledger's last event is refused at once, as a 422: a write answers
    only once it is stored (and the head counts committed events only), so no write gave it
    out, and a client told to retry would retry for ever. The head and the views' position
    are read on the event loop (`ViewStore.read`); only a wait that folds events (inline mode)
    takes a worker thread. Views kept by another process (a `vledger projections run`
    worker) are watched from the loop, so fifty readers waiting for a lagging worker hold no
    thread the writes need.
    """
    if min_position is None or min_position == 0:
        return
    await admit(request)
    models = services.models
    if await models.runner.position_async() >= min_position:
        return  # the common case, one statement: views never read past the head
    head = await models.head_async()
    if min_position > head:
        raise InvalidField(f"min_position {min_position} is beyond the ledger's last event "
                           f"({head}); pass the position a write answered", "min_position")
    wait = services.settings.read_wait_seconds
    if services.settings.inline_projections:
        reached = await run_in_threadpool(models.wait_for, min_position, wait, True, True)
    else:
        reached = await models.runner.watch_async(min_position, wait)
    if not reached:
        raise HTTPException(
            503, f"the views have not reached position {min_position} yet "
                 f"({views_keeper(services.settings)}); retry shortly",
            headers={"Retry-After": "1"})


def views_keeper(settings: Settings) -> str:
    """Who keeps the views up to date, for a 503 that says they are behind (bb19, bb36 F11:
    in worker mode the answer must send the operator to the worker)."""
    if settings.inline_projections:
        return "being rebuilt, or caught up by another process"
    return "kept by `vledger projections run`: is it running? Or being rebuilt"


Fresh = Depends(read_your_writes)

# Public routes take a token but do not need one (an unknown token is still refused).
PUBLIC: dict[str, Any] = {"security": [{}, {"HTTPBearer": []}]}
