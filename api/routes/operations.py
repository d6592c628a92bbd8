"""Operations: liveness, readiness, metrics; and the public program catalogue."""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from api.deps import PUBLIC, MaybeActor, Services, ServicesDep, views_keeper
from api.errors import RETRY_AFTER, Problem
from ledger.catalogue import CATEGORY_NAMES, PROGRAMS, STAR_THRESHOLD_HOURS
from projections.audit import AuditLog
from projections.runner import ViewStatus
from projections.sweep import last_sweep

router = APIRouter(tags=["operations"])
T = TypeVar("T")
log = logging.getLogger("vledger.api")


def _unavailable(text: str) -> dict[int | str, dict[str, Any]]:
    """A probe's own 503: not always sent with Retry-After (a store that does not answer at
    all, views stopped at an event they cannot read)."""
    return {503: {"model": Problem, "description": text, "headers": {"Retry-After": RETRY_AFTER}}}


@router.get("/openapi.json", include_in_schema=False)
async def openapi_document(request: Request, actor: MaybeActor) -> JSONResponse:
    """The OpenAPI document (public; an unknown or revoked token is refused, as everywhere)."""
    return JSONResponse(request.app.openapi())


# The pages' scripts and styles are served from here, not from a CDN (bb15 F7: without
# internet access the docs page was blank): fastapi-offline's copies (api/app.py mounts them).
DOCS_ASSETS = "/docs/assets"


@router.get("/docs", include_in_schema=False)
async def swagger_ui(actor: MaybeActor) -> HTMLResponse:
    """The interactive documentation of /openapi.json."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title="volunteer-ledger API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")


@router.get("/redoc", include_in_schema=False)
async def redoc(actor: MaybeActor) -> HTMLResponse:
    """The same document, read as a reference."""
    return get_redoc_html(openapi_url="/openapi.json", title="volunteer-ledger API",
                          redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                          redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                          with_google_fonts=False)


def docs_assets() -> StaticFiles:
    """The files DOCS_ASSETS serves."""
    return StaticFiles(directory=str(importlib.resources.files("fastapi_offline") / "static"))


# How long a probe waits for the store before it answers 503: a load balancer's health check
# must be answered, not held while a failover or a restart of the store lasts (the pools wait
# up to 10-30 s for a connection; a probe during a pg_auto_failover outage hung up to 62 s).
PROBE_SECONDS = 2.0


async def _probed(work: Awaitable[T]) -> T:
    """`work` (a probe's reads of the store), or a 503 once it took PROBE_SECONDS.

    The work is left to finish on its own rather than cancelled and waited for: cancelling a
    query sends the server a cancel request, which a hung server does not answer either (a
    SIGSTOPped PostgreSQL held the 503 for 12 s)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=PROBE_SECONDS)
    if not done:
        task.add_done_callback(_forget)
        raise HTTPException(503, f"the store did not answer within {PROBE_SECONDS:g} s",
                            headers={"Retry-After": "1"})
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    """A probe answered already: its late outcome, or failure, is of no use to anyone."""
    if not task.cancelled():
        task.exception()  # read, so asyncio does not log it as never retrieved


@router.get("/healthz", openapi_extra=PUBLIC,
            responses=_unavailable("The event store does not answer, or is busy."))
async def healthz(actor: MaybeActor, services: ServicesDep) -> dict[str, Any]:
    """200 when the event store answers (within 2 s), else 503."""
    try:
        head = await _probed(services.models.head_async())
    except HTTPException:
        raise
    except Exception as error:  # the store is down: say so, as a 503
        raise HTTPException(503, f"the event store does not answer: {error}",
                            headers={"Retry-After": "1"}) from None
    return {"status": "ok", "store": services.settings.store().kind, "head": head}


@router.get("/readyz", openapi_extra=PUBLIC, responses=_unavailable(
    "A view lags further than the configured limits, the views stopped at an event they "
    "cannot read, or the store does not answer."))
async def readyz(actor: MaybeActor, services: ServicesDep) -> dict[str, Any]:
    """200 when every view is within the configured lag of the store's head (in events,
    VLEDGER_MAX_VIEW_LAG_EVENTS, and in seconds the oldest unread event has waited,
    VLEDGER_MAX_VIEW_LAG_SECONDS); 503 when one lags further, when the views stopped at an
    event they cannot read (with the error), or when the store does not answer within 2 s.
    `audit` is the audit log's state: the position of the last event it logged, whose leaf
    was checked against its view before the next was appended (`checked_position`), its lag,
    whether that lag is within the limits, the last checkpoint published, why
    `GET /v1/audit/checkpoint` would be refused now (`checkpoint_refused`: the log does not
    extend the published checkpoint, or the store no longer holds the one kept beside the
    signing key; checked from a few rows, not the events, at most every 5 s while no event
    is written; else null), and what the last audit sweep found (`sweep`: every logged
    event's leaf and the published root recomputed from the events, every
    VLEDGER_AUDIT_SWEEP_SECONDS; `ok` false names what was altered). When either finds the
    log altered, the top-level `status` is `altered`, still with a 200, and `detail` says
    what was found (else null)."""
    return await _probed(run_in_threadpool(_ready, services))


def _ready(services: Services) -> dict[str, Any]:
    failure = services.models.runner.failure
    if failure is not None:  # not a lag that will pass: the views cannot read on
        raise HTTPException(503, f"the views stopped at position {failure[0]}: {failure[1]}",
                            headers={"Retry-After": "1"})
    try:
        statuses = services.models.runner.status()
    except Exception as error:  # the store does not answer (down, or out of connections)
        raise HTTPException(503, f"the store does not answer: {error}",
                            headers={"Retry-After": "1"}) from None
    lag = max((s.lag for s in statuses), default=0)
    behind = min((s.position for s in statuses if s.lag), default=None)
    waited = services.models.lag_seconds(behind) if behind is not None else 0.0
    settings = services.settings
    if lag > settings.max_view_lag_events or waited > settings.max_view_lag_seconds:
        events = "event" if lag == 1 else "events"
        lagging = ", ".join(s.name for s in statuses if s.lag)
        raise HTTPException(503, f"views lag {lag} {events} behind the store ({lagging}); "
                                 f"the oldest has waited {waited:.1f} s (limits: "
                                 f"{settings.max_view_lag_events} events, "
                                 f"{settings.max_view_lag_seconds:g} s; "
                                 f"{views_keeper(settings)})",
                            headers={"Retry-After": "1"})
    audit = next((s for s in statuses if s.name == AuditLog.name), None)
    state = None if audit is None else _audit_state(services, audit, behind, waited)
    # Still 200: the service answers, and what to believe is the office's to decide; but a
    # monitor that reads `status` sees it (bb36 F7).
    found: list[str] = []
    if state is not None:
        if state["checkpoint_refused"]:  # what the checkpoint route answers 500 with (bb39 F8)
            found.append(state["checkpoint_refused"])
        sweep = state["sweep"]
        if sweep is not None and not sweep["ok"]:
            found.append(f"the last audit sweep found: {sweep['detail'] or 'the log altered'}")
    detail = "; ".join(found) or None
    return {"status": "ok" if detail is None else "altered", "detail": detail,
            "lag_seconds": round(waited, 3),
            "views": {s.name: {"position": s.position, "lag": s.lag} for s in statuses},
            "audit": state}


def _audit_state(services: Services, audit: ViewStatus, behind: int | None,
                 waited: float) -> dict[str, Any]:
    """The audit log's part of /readyz (see `readyz`)."""
    settings = services.settings
    if not audit.lag:
        audit_waited = 0.0
    elif audit.position == behind:  # the oldest unread event of all is the audit log's
        audit_waited = waited
    else:
        audit_waited = services.models.lag_seconds(audit.position)
    refused = services.auditor.refusal(audit.position)
    published = services.auditor.published()
    swept = last_sweep(services.models.store)
    return {
        "checked_position": audit.position, "lag": audit.lag,
        "lag_seconds": round(audit_waited, 3),
        "within_lag": (audit.lag <= settings.max_view_lag_events
                       and audit_waited <= settings.max_view_lag_seconds),
        "checkpoint": None if published is None else {
            "tree_size": published["tree_size"], "signed_at": published["signed_at"]},
        "checkpoint_refused": refused,
        # The last audit sweep (projections/sweep.py): None until one has run.
        "sweep": None if swept is None else swept.as_json(),
    }


@router.get("/metrics", response_class=PlainTextResponse, openapi_extra=PUBLIC)
def metrics(request: Request, actor: MaybeActor, services: ServicesDep) -> PlainTextResponse:
    """Prometheus metrics, for the whole server however many workers it runs: HTTP requests
    (`vledger_http_requests_total`) and their latency (`vledger_http_request_seconds`) by
    method, route and status; events this server stored (`vledger_events_appended_total`);
    the store's head (`vledger_events_head`); and for each view its position
    (`vledger_view_position`), the events it has yet to read (`vledger_view_lag_events`) and
    how long the oldest of them has waited (`vledger_view_lag_seconds`, as /readyz counts it);
    and from the last audit sweep, when it finished (`vledger_audit_sweep_timestamp_seconds`)
    and how many logged events it found altered (`vledger_audit_altered_events`: 0 when the
    store is as logged; at least 1 also when only the published checkpoint was); and the
    stored snapshots found without this key's MAC and replayed past
    (`vledger_snapshots_refused`, the most any worker found).
    While the store does not answer, the request figures still do, `vledger_store_up` is 0,
    and the store's figures are the last known.
    """
    m = request.app.state.metrics
    models = services.models
    try:
        waited: dict[int, float] = {}  # views at one position share the oldest unread event
        for s in models.runner.status():
            m.view_position.labels(s.name).set(s.position)
            m.view_lag.labels(s.name).set(s.lag)
            if s.lag and s.position not in waited:
                waited[s.position] = models.lag_seconds(s.position)
            m.view_lag_seconds.labels(s.name).set(waited.get(s.position, 0.0) if s.lag else 0.0)
            m.head.set(s.head)
        m.snapshots_refused.set(len(services.ledger.refused_snapshots()))
        swept = last_sweep(models.store)
        if swept is not None:
            m.audit_altered.set(swept.altered or (0 if swept.ok else 1))
            m.audit_swept_at.set(swept.finished_at)
        m.store_up.set(1)
    except Exception as error:  # down, or out of connections: what matters most to a monitor
        log.warning("metrics answered without the store: %s: %s", type(error).__name__, error)
        m.store_up.set(0)
    return PlainTextResponse(generate_latest(m.registry).decode(),
                             media_type="text/plain; version=0.0.4")


@router.get("/v1/programs", openapi_extra=PUBLIC)
def programs(actor: MaybeActor) -> dict[str, Any]:
    """The plan's 3 categories and 16 programs, and the star thresholds in hours."""
    return {
        "categories": {c.value: {"name_zh": zh, "name_en": en}
                       for c, (zh, en) in CATEGORY_NAMES.items()},
        "programs": [{"code": p.code, "category": p.category.value, "name_zh": p.name_zh,
                      "name_en": p.name_en, "responsible": list(p.responsible)}
                     for p in PROGRAMS.values()],
        "star_threshold_hours": list(STAR_THRESHOLD_HOURS),
    }
