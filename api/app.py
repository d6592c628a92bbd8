"""The FastAPI application factory: one `Ledger`, its views and the auditor per process."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.deps import Services
from api.limits import Compression, RequestLimits
from api.lists import StoredLists
from api.metrics import Metrics, MetricsMiddleware
from api.routes import (
    activities,
    audit,
    awards,
    directory,
    hours,
    operations,
    reports,
    sessions,
    tokens,
    trainings,
    units,
    volunteers,
)
from api.serving import tune_collector
from ledger import Ledger, Settings
from projections.audit import Auditor, unkept_checkpoint
from projections.models import ReadModels, auditor_views
from projections.signing import SigningKey
from projections.sweep import Sweeper
from projections.vouching import vouch_for

log = logging.getLogger("vledger")
FOLLOW_SECONDS = 1.0  # at most this long between catch-ups (any commit wakes it on PostgreSQL)

DESCRIPTION = """
The ledger of the district's "Learn from Lei Feng" volunteer service (学雷锋志愿服务).
Every registration, service session, training and award is an immutable event; the read
models answer hours and stars, rankings, bulletins and award eligibility; auditors verify
every event against a signed Merkle tree (RFC 9162).

Writes answer the event `position` they were stored at; pass it back as `?min_position=`
to read your own write. Errors are `application/problem+json` (RFC 9457).
"""


# The order /docs lists the routes in, whatever order the routers are matched in.
TAG_ORDER = ("operations", "units", "volunteers", "activities", "service sessions", "trainings",
             "awards", "hours and eligibility", "reports", "audit", "tokens")


def open_services(settings: Settings,
                  recorded: Callable[[int], None] | None = None) -> Services:
    """Open the store, load the catalogue, build the views and bring them up to date;
    `recorded` is told how many events each of the ledger's saves stored."""
    ledger = Ledger(settings)
    ledger.on_recorded = recorded
    ledger.ensure_catalogue()
    models = ReadModels(ledger, extra=auditor_views())
    signing = SigningKey.for_store(settings.store())
    if signing.path is not None:  # before anything keeps the store's checkpoint as this host's
        unkept = unkept_checkpoint(models.store, signing.path)
        if unkept:
            log.warning("%s", unkept)
    # Writes build only on events the audit log vouches for, and on sealed snapshots.
    vouch_for(ledger, models.store, signing)
    auditor = Auditor(models.store, signing)
    auditor.sealing(ledger.recorder, ledger.seals)  # it signs no event without its seal
    if settings.inline_projections:  # else a `vledger projections run` worker keeps them
        models.catch_up()
    return Services(settings=settings, ledger=ledger, models=models, auditor=auditor,
                    cursor_secret=signing.derived_secret("vledger list cursors"))


def _follow(services: Services, stop: threading.Event) -> None:
    # Views also follow writes made by other processes (CLI imports, other workers): on
    # PostgreSQL as soon as they commit, on SQLite within a second (runner.Wakeup).
    services.models.runner.follow(stop, FOLLOW_SECONDS, failed=lambda error: log.error(
        "catching up the views failed", exc_info=error))


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for the given settings (read from `VLEDGER_*` when not given)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = open_services(settings, recorded=app.state.metrics.events_appended.inc)
        app.state.services = services
        # Ranked lists' versions, for their next pages served by any worker (api/lists.py).
        app.state.lists = StoredLists(services.models.store)
        stop = threading.Event()
        follower = threading.Thread(target=_follow, args=(services, stop), daemon=True,
                                    name="vledger-views")
        if settings.inline_projections:
            follower.start()
        signer = None
        if settings.checkpoint_seconds:  # checkpoints kept beside the key, often (bb42 F1, F4)
            signer = threading.Thread(target=services.auditor.keep_signing,
                                      args=(stop, settings.checkpoint_seconds), daemon=True,
                                      name="vledger-checkpoints")
            signer.start()
        sweeper = None
        if settings.audit_sweep_seconds:
            sweeper = threading.Thread(target=Sweeper(
                services.ledger.recorder, services.auditor, settings.audit_sweep_seconds).run,
                args=(stop,), daemon=True, name="vledger-audit-sweep")
            sweeper.start()
        await services.models.store.open_reads()
        try:
            yield
        finally:
            stop.set()
            for thread in (follower, sweeper, signer):
                if thread is not None and thread.is_alive():
                    thread.join(timeout=5)
            await services.models.store.close_reads()
            services.models.close()
            services.ledger.close()

    # The documents are served by routes of ours (api/routes/operations.py), so that an
    # unknown or revoked token is refused there as on every other route.
    app = FastAPI(title="volunteer-ledger", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None,
                  openapi_tags=[{"name": tag} for tag in TAG_ORDER])
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(Compression)
    app.add_middleware(RequestLimits)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    errors.install(app)
    # A request is matched against the routers in order, route by route (twice for the one
    # that matches), so the hot reads come first: 287 -> 225 us per hours read in-process. No
    # path of one router matches a route of another; the documents keep the tags' order.
    for module in (hours, reports, operations, units, volunteers, directory, activities,
                   sessions, trainings, awards, audit, tokens):
        app.include_router(module.router, responses=errors.PROBLEM_RESPONSES)
    app.mount(operations.DOCS_ASSETS, operations.docs_assets(), name="docs-assets")
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker (`api.app:app_from_env`)."""
    # One JSON line per request (with its request id) on standard error.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = create_app(Settings())
    tune_collector()
    return app
