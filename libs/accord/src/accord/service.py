"""The common shape of every Accord service: health, readiness, metrics, errors, and a clean run loop."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sse_starlette.sse import AppStatus
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.audit import AuditEvent, AuditLog
from accord.errors import AccordError, as_accord_error
from accord.strict_json import read_strict_json
from accord.telemetry import UNTRACED_PATHS, configure_telemetry, shutdown_telemetry

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)
SIGNATURE_REASONS = frozenset({"signature_invalid", "card_unsigned", "card_signature_invalid"})
_CAUSE_CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class ServiceMetrics:
    """Per-app Prometheus registry: no process-global collectors, so tests never share state.

    Every service's `/metrics` serves this registry. A service adds its own metrics through
    `counter`, `histogram` and `gauge` (reach the instance as `service_metrics(app)` or
    `app.state.metrics`), for example::

        metrics = service_metrics(app)
        decisions = metrics.counter(
            "accord_authz_decisions_total", "Authorization decisions", ["outcome", "reason"]
        )
        decisions.labels(outcome="denied", reason="insufficient_scope").inc()
        depth = metrics.gauge("accord_queue_depth", "Work waiting", ["queue"])
        depth.labels(queue="steps").set_function(lambda: len(queue))

    Registering the same name again returns the existing metric, so a component built twice on one app
    shares it; the same name with another kind or other labels is a programming error (ValueError).
    Names start with `accord_`; label values must be bounded sets (reason codes, outcomes), never ids.
    """

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        self._extra: dict[str, tuple[type, tuple[str, ...], Counter | Gauge | Histogram]] = {}
        self.requests = Counter(
            "accord_http_requests_total",
            "HTTP requests by route and status",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "accord_http_request_duration_seconds",
            "HTTP request latency by route",
            ["service", "method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def count_decisions(self, audit: AuditLog) -> None:
        """Count every decision `audit` records (authorization, signatures, delegation, grants, runs) by
        action, outcome and reason, and refused signatures by their cause besides."""
        decisions = self.counter(
            "accord_decisions_total",
            "Audited decisions by action, outcome and reason code",
            ["service", "action", "outcome", "reason"],
        )
        signatures = self.counter(
            "accord_signature_failures_total",
            "Refused signatures (relayed messages, replies, cards) by reason and cause",
            ["service", "reason", "cause"],
        )

        def count(event: AuditEvent) -> None:
            reason = event.reason or ""
            decisions.labels(self.service, event.action, event.outcome, reason).inc()
            if reason in SIGNATURE_REASONS:
                cause = event.details.get("cause")
                # Causes are codes; anything else would make the label set unbounded.
                code = cause if isinstance(cause, str) and _CAUSE_CODE.match(cause) else "other"
                signatures.labels(self.service, reason, code).inc()

        audit.observe(count)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return self._register(Counter, name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return self._register(Gauge, name, documentation, labels)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._register(Histogram, name, documentation, labels, buckets=buckets)

    def _register(
        self, kind: type[_Metric], name: str, documentation: str, labels: Sequence[str], **options: Any
    ) -> _Metric:
        if not name.startswith("accord_"):
            raise ValueError(f"metric {name!r}: Accord metric names start with 'accord_'")
        known = self._extra.get(name)
        if known is not None:
            known_kind, known_labels, metric = known
            if known_kind is not kind or known_labels != tuple(labels):
                raise ValueError(f"metric {name!r} is already registered with another kind or labels")
            assert isinstance(metric, kind)
            return metric
        created = kind(name, documentation, list(labels), registry=self.registry, **options)
        self._extra[name] = (kind, tuple(labels), created)
        return created


def service_metrics(app: FastAPI) -> ServiceMetrics:
    """The Prometheus metrics of an app made by `create_service_app`."""
    metrics: ServiceMetrics = app.state.metrics
    return metrics


class _MetricsMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware): streaming MCP and SSE responses pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            labels = (self.metrics.service, scope["method"], path)
            self.metrics.requests.labels(*labels, str(status)).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


async def _accord_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    error = as_accord_error(exc)
    if error.reason == "internal_error" and not isinstance(exc, AccordError):
        logger.error("unhandled error", exc_info=exc)
    return JSONResponse(error.to_body(), status_code=error.kind.http_status)


_HTTP_REASONS = {404: "not_found", 405: "not_found", 413: "body_too_large", 415: "unsupported_media_type"}


async def _http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method) in the same body shape as ours."""
    assert isinstance(exc, StarletteHTTPException)
    reason = _HTTP_REASONS.get(
        exc.status_code, "invalid_input" if exc.status_code < 500 else "internal_error"
    )
    error = AccordError(reason)
    return JSONResponse(error.to_body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    if any(p["type"] == "json_invalid" for p in problems):
        error = AccordError("malformed_json", "request body is not valid JSON")
    else:
        error = AccordError("invalid_input", "request does not match the schema", problems=problems)
    return JSONResponse(error.to_body(), status_code=error.kind.http_status)


def create_service_app(
    service: str,
    lifespan: Lifespan | None = None,
    readiness: list[ReadinessCheck] | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    """A FastAPI app with `/healthz`, `/readyz`, `/metrics` and the error table wired in, traced (a server
    span per request) once telemetry is configured for the process, as `serve` does. With `audit`, the
    metrics count every decision it records (`ServiceMetrics.count_decisions`)."""
    metrics = ServiceMetrics(service)
    if audit is not None:
        metrics.count_decisions(audit)
    checks = list(readiness or [])
    app = FastAPI(
        title=service,
        lifespan=lifespan,
        # Server spans continue the caller's traceparent once `configure_telemetry` has run (in `serve`);
        # FastAPI's per-dependency spans would bury the hops, and metrics are Prometheus' job here.
        telemetry={"operation_spans": False, "metrics": False, "logs": False, "exclude": _untraced},
    )
    app.state.service_name = service
    app.state.metrics = metrics
    app.state.readiness = checks
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(AccordError, _accord_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(Exception, _accord_error_handler)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        results = await asyncio.gather(*(check() for check in app.state.readiness), return_exceptions=True)
        ready = all(result is True for result in results)
        body = {"status": "ready" if ready else "not_ready", "service": service}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def read_json_object(request: Request, max_bytes: int = 1_000_000) -> dict[str, Any]:
    """Parse a request body that must be one JSON object: strict JSON, size-capped, reason-coded errors."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip() not in ("application/json", ""):
        raise AccordError("unsupported_media_type", "send application/json")
    value = await read_strict_json(request, max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise AccordError("invalid_input", "request body must be a JSON object")
    return value


BackgroundServer = Callable[[], AbstractAsyncContextManager[None]]
SSE_DRAIN_GRACE_S = 3.0
# How long an idle keep-alive connection stays open here: well past the time client pools keep one (httpx:
# 5 s, uvicorn's own default too). With equal times, a client could send on a connection in the very
# moment the server closes it, and see a ReadError for a request that never arrived.
KEEP_ALIVE_S = 30.0


def server_config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    """The uvicorn settings every Accord HTTP server runs with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=int(KEEP_ALIVE_S),
    )


class OwnSignalsServer(uvicorn.Server):
    """A uvicorn server that installs no signal handlers of its own.

    uvicorn re-raises a captured SIGTERM once it stops serving, killing the process before the other
    servers (gRPC) drain; `serve` installs its own handlers instead, so shutdown stays graceful. A server
    embedded in a process with others (tests) must not install any either: sse-starlette finds "the"
    uvicorn server through the SIGTERM handler, and would end every SSE stream in the process when
    whichever server last installed one stops."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(app: FastAPI, host: str, port: int, extra: list[BackgroundServer] | None = None) -> None:
    """Run the HTTP app (and e.g. a gRPC server) until SIGTERM or SIGINT, then stop gracefully.

    Tracing is configured for the process first (`accord.telemetry`), named after the app's service,
    and flushed once everything has stopped."""
    configure_telemetry(getattr(app.state, "service_name", None) or app.title)
    try:
        await _serve(app, host, port, extra)
    finally:
        await asyncio.to_thread(shutdown_telemetry)


async def _serve(app: FastAPI, host: str, port: int, extra: list[BackgroundServer] | None) -> None:
    server = OwnSignalsServer(server_config(app, host, port))

    loop = asyncio.get_running_loop()

    def end_streams() -> None:
        AppStatus.should_exit = True

    def begin_shutdown() -> None:
        server.should_exit = True
        # uvicorn waits for every open response before it stops, and a held-open SSE stream (an MCP
        # session's, an A2A subscription) never ends by itself: after a grace period in which answers
        # under way (some of them streamed) can finish, the streams still open are ended.
        loop.call_later(SSE_DRAIN_GRACE_S, end_streams)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, begin_shutdown)

    @asynccontextmanager
    async def running_extras() -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for factory in extra or []:
                await stack.enter_async_context(factory())
            yield

    async with running_extras():
        await server.serve()
