"""Tracing for every Accord process: one TracerProvider per process, W3C propagation on every hop, and
small helpers for spans that follow the OpenTelemetry GenAI conventions.

`accord.service.serve` calls `configure_telemetry(service)` before it serves, so each service gets:
- a server span per inbound HTTP request (FastAPI's native telemetry, continuing the caller's
  `traceparent`) and per inbound gRPC call (`grpc_tracing`), named as the HTTP/RPC conventions say;
- a client span and `traceparent` on every outbound httpx/httpx2 request and grpc.aio call;
- MCP: the SDK's client puts `traceparent` in `params._meta` and its server middleware continues it;
- spans stored locally (`span_store`, read by `accord trace`) and exported over OTLP/HTTP when
  `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `ACCORD_OTLP_ENDPOINT`) is set.

Run context travels as W3C baggage (`accord.run_id`, `accord.workflow`, `accord.step`, `accord.skill`):
every span started under it, in any service, carries those attributes, so a run's spans are found and
labelled wherever they were recorded.

Environment: `ACCORD_TELEMETRY=off` disables all of it; `ACCORD_SPAN_STORE=off` keeps only OTLP;
`ACCORD_STATE_DIR` / `ACCORD_DATABASE_URL` choose where the span store lives.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, SpanContext, SpanKind, StatusCode

from accord.errors import AccordError
from accord.grpc_tracing import client_interceptors, instrument_grpc, server_interceptors
from accord.http_tracing import instrument_http_clients
from accord.redaction import redact_value
from accord.span_store import SpanStoreExporter, open_sink

logger = logging.getLogger(__name__)

TRACER_NAME = "accord"

# Attribute names: the GenAI semantic conventions where they define one, `accord.*` for the rest.
OPERATION = "gen_ai.operation.name"
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
REQUEST_MODEL = "gen_ai.request.model"
COST_USD = "accord.usage.cost_usd"
WORKFLOW = "accord.workflow"
STEP = "accord.step"
SKILL = "accord.skill"
RUN_ID = "accord.run_id"
RETRIES = "accord.retries"
QUEUE_WAIT_MS = "accord.queue.wait_ms"
BUDGET_USED = "accord.budget.used"
BUDGET_ALLOWED = "accord.budget.allowed"
BUDGET_UNIT = "accord.budget.unit"
RUN_CONTEXT_KEYS = (RUN_ID, WORKFLOW, STEP, SKILL)
_MAX_BAGGAGE_VALUE = 128  # baggage arrives from callers: bounded before it becomes an attribute

# Scopes whose spans describe SDK internals (queues, dispatchers) rather than hops: left out of the
# local store, their children re-attached to the nearest kept ancestor. OTLP still receives them.
HIDDEN_SCOPES = frozenset({"a2a-python-sdk"})
# Polled by orchestration and monitoring; a span per poll would bury the runs.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(frozen=True)
class TelemetrySettings:
    enabled: bool = True
    span_store: bool = True
    state_dir: Path = Path(".accord")
    database_url: str | None = None
    otlp_endpoint: str | None = None
    schedule_delay_ms: float = 200.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if environ is None else environ
        off = ("0", "false", "off", "no")
        otlp = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or env.get("ACCORD_OTLP_ENDPOINT")
        )
        return cls(
            enabled=env.get("ACCORD_TELEMETRY", "on").lower() not in off,
            span_store=env.get("ACCORD_SPAN_STORE", "on").lower() not in off,
            state_dir=Path(env.get("ACCORD_STATE_DIR", ".accord")),
            database_url=env.get("ACCORD_DATABASE_URL") or None,
            otlp_endpoint=otlp or None,
        )


class _Process:
    """What `configure_telemetry` set up in this process (OpenTelemetry's provider is process-global
    and can be set once, so this is too)."""

    service: str | None = None
    provider: TracerProvider | None = None


def configure_telemetry(service: str, settings: TelemetrySettings | None = None) -> TracerProvider | None:
    """Set up tracing for this process once; later calls return the same provider."""
    if _Process.provider is not None:
        if service != _Process.service:
            logger.warning("telemetry already configured", extra={"as_service": _Process.service})
        return _Process.provider
    settings = settings or TelemetrySettings.from_env()
    if not settings.enabled:
        return None
    resource = Resource.create(
        {
            "service.name": service,
            "service.namespace": "accord",
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(RunContextProcessor())
    if settings.span_store:
        sink = open_sink(service, settings.state_dir, settings.database_url)
        store = BatchSpanProcessor(
            SpanStoreExporter(sink, service), schedule_delay_millis=settings.schedule_delay_ms
        )
        provider.add_span_processor(HiddenScopeProcessor(store, HIDDEN_SCOPES))
    if settings.otlp_endpoint:
        provider.add_span_processor(BatchSpanProcessor(RedactingExporter(_otlp_exporter(settings))))
    trace.set_tracer_provider(provider)
    instrument_http_clients()
    instrument_grpc()
    _Process.service, _Process.provider = service, provider
    return provider


def _otlp_exporter(settings: TelemetrySettings) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return OTLPSpanExporter()  # the exporter reads the standard variables itself (headers included)
    endpoint = (settings.otlp_endpoint or "").rstrip("/")
    return OTLPSpanExporter(endpoint=endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces")


def shutdown_telemetry() -> None:
    """Flush and close the exporters (at the end of `serve`, so no span of a stopping service is lost)."""
    if _Process.provider is not None:
        _Process.provider.shutdown()


def flush_telemetry(timeout_ms: int = 5000) -> bool:
    return _Process.provider.force_flush(timeout_ms) if _Process.provider is not None else True


# --- processors and exporters ------------------------------------------------------------------------


class RunContextProcessor(SpanProcessor):
    """Copies the run context from baggage onto every span as it starts."""

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        for key in RUN_CONTEXT_KEYS:
            value = baggage.get_baggage(key, parent_context)
            if isinstance(value, str) and 0 < len(value) <= _MAX_BAGGAGE_VALUE:
                span.set_attribute(key, value)


class HiddenScopeProcessor(SpanProcessor):
    """Forwards spans to `inner`, except those of hidden instrumentation scopes; a kept span whose parent
    was hidden is re-attached to its nearest kept ancestor, so the tree stays connected."""

    _MAX_REMEMBERED = 50_000

    def __init__(self, inner: SpanProcessor, hidden_scopes: frozenset[str]) -> None:
        self._inner = inner
        self._hidden_scopes = hidden_scopes
        # hidden span id -> its parent's span id (or None): bounded, oldest forgotten first.
        self._hidden: OrderedDict[int, int | None] = OrderedDict()

    def _is_hidden(self, span: ReadableSpan) -> bool:
        scope = span.instrumentation_scope
        return scope is not None and scope.name in self._hidden_scopes

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        if self._is_hidden(span):
            parent = span.parent
            self._hidden[span.context.span_id] = parent.span_id if parent is not None else None
            while len(self._hidden) > self._MAX_REMEMBERED:
                self._hidden.popitem(last=False)
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self._is_hidden(span):
            return
        parent = span.parent
        if parent is not None and parent.span_id in self._hidden:
            ancestor: int | None = parent.span_id
            while ancestor is not None and ancestor in self._hidden:
                ancestor = self._hidden[ancestor]
            new_parent = (
                SpanContext(parent.trace_id, ancestor, is_remote=False, trace_flags=parent.trace_flags)
                if ancestor is not None
                else None
            )
            span = copy_span(span, parent=new_parent)
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


_KEEP = object()


def copy_span(span: ReadableSpan, parent: Any = _KEEP, attributes: Any = _KEEP) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent if parent is _KEEP else parent,
        resource=span.resource,
        attributes=span.attributes if attributes is _KEEP else attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingExporter(SpanExporter):
    """Secrets never leave the process in span attributes, whatever exporter comes after."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export(
            [
                copy_span(
                    span,
                    attributes={k: _redacted(k, v) for k, v in (span.attributes or {}).items()},
                )
                for span in spans
            ]
        )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _redacted(key: str, value: Any) -> Any:
    cleaned = redact_value(key, list(value) if isinstance(value, tuple) else value)
    return tuple(cleaned) if isinstance(cleaned, list) else cleaned


# --- the API services call -----------------------------------------------------------------------------


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def run_context(
    run_id: str | None = None,
    workflow: str | None = None,
    step: str | None = None,
    skill: str | None = None,
) -> Iterator[None]:
    """Every span started inside, in this service and downstream (as W3C baggage), carries these run
    attributes. Spans already open (the current one included) are not changed."""
    ctx = otel_context.get_current()
    for key, value in ((RUN_ID, run_id), (WORKFLOW, workflow), (STEP, step), (SKILL, skill)):
        if value is not None:
            ctx = baggage.set_baggage(key, value, ctx)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def workflow_run(run_id: str, workflow: str) -> Iterator[Span]:
    """The span of one execution of a run by the orchestrator (its agent calls nest inside); the run
    context travels on from it as baggage."""
    with (
        run_context(run_id, workflow),
        _genai_span(f"run {workflow}", SpanKind.INTERNAL, {RUN_ID: run_id, WORKFLOW: workflow}) as span,
    ):
        yield span


@contextmanager
def invoke_agent(
    agent: str,
    *,
    skill: str | None = None,
    workflow: str | None = None,
    step: str | None = None,
    run_id: str | None = None,
    kind: SpanKind = SpanKind.CLIENT,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A GenAI `invoke_agent {agent}` span (CLIENT when calling a remote agent, INTERNAL when an agent
    runs its own skill). The run context is propagated to the agent as baggage."""
    with (
        run_context(run_id, workflow, step, skill),
        _genai_span(
            f"invoke_agent {agent}",
            kind,
            {OPERATION: "invoke_agent", AGENT_NAME: agent, **(attributes or {})},
        ) as span,
    ):
        yield span


@contextmanager
def execute_tool(
    tool: str,
    *,
    call_id: str | None = None,
    tool_type: str = "function",
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A GenAI `execute_tool {tool}` span around one tool call."""
    values: dict[str, Any] = {OPERATION: "execute_tool", TOOL_NAME: tool, "gen_ai.tool.type": tool_type}
    if call_id is not None:
        values[TOOL_CALL_ID] = call_id
    with _genai_span(f"execute_tool {tool}", SpanKind.INTERNAL, {**values, **(attributes or {})}) as span:
        yield span


@contextmanager
def _genai_span(name: str, kind: SpanKind, attributes: dict[str, Any]) -> Iterator[Span]:
    with tracer().start_as_current_span(
        name,
        kind=kind,
        attributes={k: v for k, v in attributes.items() if v is not None},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            reason = exc.reason if isinstance(exc, AccordError) else type(exc).__qualname__
            span.set_attribute("error.type", reason)
            span.set_status(StatusCode.ERROR, reason)
            raise


def _target(span: Span | None) -> Span:
    return span if span is not None else trace.get_current_span()


def record_usage(
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cost_usd: float | None = None,
    model: str | None = None,
    span: Span | None = None,
) -> None:
    """Token usage and cost of the work in `span` (default: the current span). Record each cost once,
    on the span that incurred it: totals add up every span's values."""
    target = _target(span)
    for key, value in (
        (INPUT_TOKENS, input_tokens),
        (OUTPUT_TOKENS, output_tokens),
        (COST_USD, cost_usd),
        (REQUEST_MODEL, model),
    ):
        if value is not None:
            target.set_attribute(key, value)


def record_retry(attempt: int, reason: str, span: Span | None = None) -> None:
    """Mark that the work in `span` is being retried (attempt 1 is the first retry)."""
    target = _target(span)
    target.add_event("retry", {"attempt": attempt, "reason": reason})
    target.set_attribute(RETRIES, attempt)


def record_queue_wait(seconds: float, span: Span | None = None) -> None:
    """How long the work waited before it started (a queue, a semaphore, a rate limiter)."""
    _target(span).set_attribute(QUEUE_WAIT_MS, round(seconds * 1000, 3))


def record_budget(used: float, allowed: float, unit: str = "usd", span: Span | None = None) -> None:
    target = _target(span)
    target.set_attribute(BUDGET_USED, used)
    target.set_attribute(BUDGET_ALLOWED, allowed)
    target.set_attribute(BUDGET_UNIT, unit)


def current_trace_id() -> str | None:
    """The current trace id as 32 lowercase hex digits, or None outside any trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_span_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.span_id, "016x") if context.is_valid else None


def propagation_headers() -> dict[str, str]:
    """`traceparent` (and baggage) for the current context, for carriers that are not instrumented,
    e.g. A2A message metadata or `ClientCallContext.service_parameters`."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def client_call(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[dict[str, str]]:
    """A CLIENT span around a call made with a transport that is not instrumented (a raw socket pool,
    a custom protocol), yielding the headers that carry its context: send them with the request (and,
    for MCP, in `params._meta` too, where the server's middleware looks). Failures mark the span."""
    with tracer().start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield propagation_headers()
        except BaseException as exc:
            reason = exc.reason if isinstance(exc, AccordError) else type(exc).__qualname__
            span.set_attribute("error.type", reason)
            span.set_status(StatusCode.ERROR, reason)
            raise


@contextmanager
def continue_trace(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context carried in `carrier` current (for inbound paths that are not instrumented)."""
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)


__all__ = [
    "TelemetrySettings",
    "client_call",
    "client_interceptors",
    "configure_telemetry",
    "continue_trace",
    "current_span_id",
    "current_trace_id",
    "execute_tool",
    "flush_telemetry",
    "invoke_agent",
    "propagation_headers",
    "record_budget",
    "record_queue_wait",
    "record_retry",
    "record_usage",
    "run_context",
    "server_interceptors",
    "shutdown_telemetry",
    "workflow_run",
]
