"""Prometheus metrics (a registry per app) and structured request logs with a request id.

Under `vledger serve --workers N` every worker keeps its own figures; a scrape reaches one
worker, so each must answer for all of them. prometheus_client's multiprocess mode does that:
with PROMETHEUS_MULTIPROC_DIR set before the library is imported (`api.serving.serve` sets a
fresh private directory before it starts the workers), each worker writes its values to files
of its own there, and /metrics merges every worker's files, a dead worker's counts included, so
a counter never goes back when a worker is replaced. A single process keeps the plain in-memory
registry, one per app.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.serving import MULTIPROC_DIR

log = logging.getLogger("vledger.http")
# A client's own request id is echoed and logged only if short and plain; else we make one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class Metrics:
    """The service's metrics; each app has its own registry so tests can build many apps.

    In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) the registry holds only the collector
    that merges every worker's files; the metrics themselves are registered nowhere (the
    library exports every one instantiated, and registered too they would be exported twice).

    The gauges are samples of the shared store, taken by whichever worker answers a scrape; how
    the workers' last samples merge (`multiprocess_mode`) follows from that. The head only ever
    grows: the highest sample is the newest (`livemax`). A view's position goes back when the
    view is rebuilt, and lags go up and down: the newest sample is the true one
    (`livemostrecent`; the greatest would keep an old lag alive). `live`: a worker that exited
    takes its samples with it (`mark_process_dead`, see api/serving.py).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        own: CollectorRegistry | None = self.registry
        directory = os.environ.get(MULTIPROC_DIR)
        if directory:
            collector: Any = MultiProcessCollector  # untyped
            collector(self.registry, path=directory)
            own = None
        self.requests = Counter("vledger_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=own)
        self.latency = Histogram("vledger_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=own,
                                 buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5))
        self.events_appended = Counter(
            "vledger_events_appended_total", "Events this server stored in the ledger",
            registry=own)
        self.head = Gauge("vledger_events_head", "Position of the newest event in the store",
                          registry=own, multiprocess_mode="livemax")
        self.view_position = Gauge("vledger_view_position", "Position each view has read",
                                   ["view"], registry=own, multiprocess_mode="livemostrecent")
        self.view_lag = Gauge("vledger_view_lag_events", "Events each view has yet to read",
                              ["view"], registry=own, multiprocess_mode="livemostrecent")
        self.store_up = Gauge(
            "vledger_store_up", "1 when the store answered the scrape's questions, else 0 "
            "(the head and view figures are then the last known)",
            registry=own, multiprocess_mode="livemostrecent")
        self.view_lag_seconds = Gauge(
            "vledger_view_lag_seconds",
            "How long the oldest event each view has yet to read has waited (0 when none)",
            ["view"], registry=own, multiprocess_mode="livemostrecent")
        self.audit_altered = Gauge(
            "vledger_audit_altered_events", "Logged events the last audit sweep found changed "
            "or deleted (at least 1 when the published checkpoint was altered)",
            registry=own, multiprocess_mode="livemostrecent")
        self.audit_swept_at = Gauge(
            "vledger_audit_sweep_timestamp_seconds", "When the last audit sweep finished",
            registry=own, multiprocess_mode="livemostrecent")
        self.snapshots_refused = Gauge(
            "vledger_snapshots_refused", "Stored snapshots this process found without this "
            "key's MAC (changed in the store, or sealed under another key) and replayed past",
            registry=own, multiprocess_mode="livemax")
        # A request's counter and histogram by (method, route, status): `labels()` builds a
        # tuple of strings and takes a lock on every call: more than half the metrics' cost.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its time."""
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.requests.labels(method, route, str(status)),
                        self.latency.labels(method, route))
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    """Pure ASGI middleware: count and time each request, tag it with a request id, log it.

    (Starlette's BaseHTTPMiddleware wraps every response in a stream and cost a third of
    a cheap request's time.)
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id")
        if request_id is None or not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        scope["vledger.request_id"] = request_id  # for the 500 answered outside (errors.py)
        status = 500

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, tagged)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.observe_request(method, route, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(json.dumps({
                    "request_id": request_id, "method": method, "path": scope["path"],
                    "route": route, "status": status, "ms": round(elapsed * 1000, 2)}))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None
