"""Client spans and W3C `traceparent` injection on every outbound HTTP request of the process.

Patched at the class level of `httpx` and of `httpx2` (the HTTP client the MCP SDK uses), so clients
created before telemetry was configured, and clients inside other libraries (the a2a-sdk's JSON-RPC and
REST transports, the MCP client), are covered without any change to the code that uses them.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import Span, SpanKind, StatusCode

TRACER_NAME = "accord.http"
_MODULES = ("httpx", "httpx2")
_MARK = "__accord_traced__"
_originals: dict[tuple[str, str], Any] = {}


def instrument_http_clients() -> None:
    """Trace `send` of `httpx`/`httpx2` `Client` and `AsyncClient` (idempotent)."""
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for class_name, traced in (("AsyncClient", _traced_async_send), ("Client", _traced_send)):
            cls = getattr(module, class_name, None)
            if cls is None or getattr(cls.send, _MARK, False):
                continue
            _originals[(module_name, class_name)] = cls.send
            wrapper = traced(cls.send)
            setattr(wrapper, _MARK, True)
            cls.send = wrapper


def uninstrument_http_clients() -> None:
    for (module_name, class_name), original in list(_originals.items()):
        cls = getattr(importlib.import_module(module_name), class_name)
        cls.send = original
        del _originals[(module_name, class_name)]


def _traced_async_send(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY):
            return await original(self, request, *args, **kwargs)
        with _client_span(request) as span:
            response = await original(self, request, *args, **kwargs)
            _record_response(span, response.status_code)
            return response

    return send


def _traced_send(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY):
            return original(self, request, *args, **kwargs)
        with _client_span(request) as span:
            response = original(self, request, *args, **kwargs)
            _record_response(span, response.status_code)
            return response

    return send


@contextmanager
def _client_span(request: Any) -> Iterator[Span]:
    """An HTTP client span (named by method, as the semantic conventions say when no URL template is
    known) whose context travels in the request's `traceparent` header."""
    url = request.url
    method = str(request.method).upper()
    attributes: dict[str, Any] = {
        "http.request.method": method,
        # Never the query: it may carry codes or tokens (OAuth redirects).
        "url.full": f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}{url.path}",
        "url.path": url.path,
        "server.address": url.host,
    }
    if url.port:
        attributes["server.port"] = url.port
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        method,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        propagate.inject(request.headers)
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(StatusCode.ERROR)
            raise


def _record_response(span: Span, status_code: int) -> None:
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 400:
        span.set_attribute("error.type", str(status_code))
        span.set_status(StatusCode.ERROR)
