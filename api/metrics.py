"""Prometheus metrics (a registry per app) and structured request logs with a request id."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("vledger.http")


class Metrics:
    """The service's metrics; each app has its own registry so tests can build many apps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vledger_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("vledger_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5))
        self.head = Gauge("vledger_events_head", "Position of the newest event in the store",
                          registry=self.registry)
        self.view_position = Gauge("vledger_view_position", "Position each view has read",
                                   ["view"], registry=self.registry)
        self.view_lag = Gauge("vledger_view_lag_events", "Events each view has yet to read",
                              ["view"], registry=self.registry)

    async def middleware(self, request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Count and time each request; tag it with a request id and log one JSON line."""
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        self.latency.labels(request.method, route).observe(elapsed)
        response.headers["X-Request-ID"] = request_id
        if log.isEnabledFor(logging.INFO):
            log.info(json.dumps({
                "request_id": request_id, "method": request.method, "path": request.url.path,
                "route": route, "status": response.status_code,
                "ms": round(elapsed * 1000, 2)}))
        return response
