"""Trace context over gRPC (grpc.aio): a server interceptor that continues the caller's trace in a server
span, and client interceptors that open a client span and send its `traceparent` as call metadata.

`instrument_grpc()` adds them to every `grpc.aio` server and channel the process creates afterwards, so
services need no wiring; `server_interceptors()` / `client_interceptors()` are there for code that builds
its own (adding them twice is harmless: a server or channel that already has one gets no second one).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from grpc.aio import _channel as aio_channel
from grpc.aio import _server as aio_server
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

TRACER_NAME = "accord.grpc"
_PROPAGATION_KEYS = frozenset({"traceparent", "tracestate", "baggage"})
# Server-side codes that mean the server failed (semantic conventions for RPC server spans).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_originals: dict[str, Any] = {}


def _split_method(method: str | bytes) -> tuple[str, str, str]:
    """`/pkg.Service/Method` -> (span name, rpc.service, rpc.method)."""
    full = method.decode() if isinstance(method, bytes) else method
    service, _, name = full.lstrip("/").partition("/")
    return f"{service}/{name}", service, name


def _rpc_attributes(method: str | bytes) -> tuple[str, dict[str, Any]]:
    name, service, rpc_method = _split_method(method)
    return name, {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc_method}


class TracingServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A SERVER span per call, child of the `traceparent` the caller sent in its metadata."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        metadata = handler_call_details.invocation_metadata or ()  # type: ignore[attr-defined]
        carrier = {key: value for key, value in metadata if isinstance(value, str)}
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        return _traced_handler(handler, method, carrier)


@contextmanager
def _server_span(method: str, carrier: dict[str, str], context: Any) -> Iterator[Span]:
    name, attributes = _rpc_attributes(method)
    # The whole extracted context becomes current, not only its span: the caller's baggage (the run
    # context) must reach the work this call starts.
    token = otel_context.attach(propagate.extract(carrier))
    tracer = trace.get_tracer(TRACER_NAME)
    try:
        with tracer.start_as_current_span(
            name,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                code = _server_code(context) or grpc.StatusCode.UNKNOWN
                _set_code(span, code, code in _SERVER_ERRORS)
                if code in _SERVER_ERRORS:
                    span.set_attribute("error.type", type(exc).__qualname__)
                raise
            code = _server_code(context) or grpc.StatusCode.OK
            _set_code(span, code, code in _SERVER_ERRORS)
    finally:
        otel_context.detach(token)


def _server_code(context: Any) -> grpc.StatusCode | None:
    try:
        code = context.code()
    except (AttributeError, NotImplementedError):
        return None
    if isinstance(code, grpc.StatusCode):
        return code
    # Older grpc.aio returns the raw integer code.
    return next((c for c in grpc.StatusCode if c.value[0] == code), None)


def _set_code(span: Span, code: grpc.StatusCode, failed: bool) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if failed:
        span.set_status(StatusCode.ERROR, code.name)


def _traced_handler(handler: Any, method: str, carrier: dict[str, str]) -> Any:
    def unary_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def traced(request: Any, context: Any) -> Any:
            with _server_span(method, carrier, context):
                return await behavior(request, context)

        return traced

    def stream_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            return unary_response(behavior)  # writes with `context.write` and returns

        async def traced(request: Any, context: Any) -> AsyncIterator[Any]:
            with _server_span(method, carrier, context):
                async for response in behavior(request, context):
                    yield response

        return traced

    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary), **options)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream), **options)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary), **options)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream), **options)
    return handler


class _TracingClientInterceptor:
    """The shared part of the four client interceptor kinds."""

    _pending: set[asyncio.Task[None]] = set()

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        name, attributes = _rpc_attributes(details.method)
        tracer = trace.get_tracer(TRACER_NAME)
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        kept = [(k, v) for k, v in (details.metadata or ()) if k.lower() not in _PROPAGATION_KEYS]
        metadata = grpc.aio.Metadata(*kept, *carrier.items())
        traced = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            call = await continuation(traced, request)
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(StatusCode.ERROR)
            span.end()
            raise
        finally:
            otel_context.detach(token)
        call.add_done_callback(lambda done: self._finish_later(span, done))
        return call

    def _finish_later(self, span: Span, call: Any) -> None:
        # The status is only readable through a coroutine; the call is done, so it answers at once.
        task = asyncio.get_running_loop().create_task(_finish(span, call))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


async def _finish(span: Span, call: Any) -> None:
    try:
        code = grpc.StatusCode.CANCELLED if call.cancelled() else await call.code()
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code != grpc.StatusCode.OK:
            span.set_attribute("error.type", code.name)
            span.set_status(StatusCode.ERROR, code.name)
    finally:
        span.end()


class TracingUnaryUnaryInterceptor(_TracingClientInterceptor, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request)


class TracingUnaryStreamInterceptor(_TracingClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request)


class TracingStreamUnaryInterceptor(_TracingClientInterceptor, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request_iterator)


class TracingStreamStreamInterceptor(_TracingClientInterceptor, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request_iterator)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """For `grpc.aio.server(interceptors=...)`."""
    return [TracingServerInterceptor()]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """For `grpc.aio.insecure_channel(target, interceptors=...)`."""
    return [
        TracingUnaryUnaryInterceptor(),
        TracingUnaryStreamInterceptor(),
        TracingStreamUnaryInterceptor(),
        TracingStreamStreamInterceptor(),
    ]


def instrument_grpc() -> None:
    """Give every grpc.aio server and channel created from now on the tracing interceptors (idempotent).

    The constructors are patched rather than `grpc.aio.insecure_channel`: callers often hold a reference
    to that function from before (the a2a-sdk's `grpc_channel_factory`), and it would stay untraced.
    """
    if _originals:
        return
    channel_init = aio_channel.Channel.__init__
    server_init = aio_server.Server.__init__

    def traced_channel_init(
        self: Any, target: Any, options: Any, credentials: Any, compression: Any, interceptors: Any
    ) -> None:
        channel_init(self, target, options, credentials, compression, _with_client(interceptors))

    def traced_server_init(
        self: Any,
        thread_pool: Any,
        generic_handlers: Any,
        interceptors: Any,
        options: Any,
        maximum_concurrent_rpcs: Any,
        compression: Any,
    ) -> None:
        server_init(
            self,
            thread_pool,
            generic_handlers,
            _with_server(interceptors),
            options,
            maximum_concurrent_rpcs,
            compression,
        )

    _originals["channel"] = channel_init
    _originals["server"] = server_init
    aio_channel.Channel.__init__ = traced_channel_init  # type: ignore[method-assign]
    aio_server.Server.__init__ = traced_server_init  # type: ignore[method-assign]


def uninstrument_grpc() -> None:
    if _originals:
        aio_channel.Channel.__init__ = _originals.pop("channel")  # type: ignore[method-assign]
        aio_server.Server.__init__ = _originals.pop("server")  # type: ignore[method-assign]


def _with_client(interceptors: Sequence[Any] | None) -> list[Any]:
    given = list(interceptors or ())
    if any(isinstance(i, _TracingClientInterceptor) for i in given):
        return given
    return [*client_interceptors(), *given]


def _with_server(interceptors: Sequence[Any] | None) -> list[Any]:
    given = list(interceptors or ())
    if any(isinstance(i, TracingServerInterceptor) for i in given):
        return given
    return [*server_interceptors(), *given]
