"""The trace id of an inbound call, from W3C `traceparent` (MCP carries it in `_meta`, HTTP in a header,
gRPC in its metadata). One parser for every service, so they all agree on what a valid one is."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?P<trace_id>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_INVALID_TRACE_ID = "0" * 32


def valid_traceparent(value: object) -> str | None:
    """A W3C `traceparent` worth propagating, normalized; None for anything else (the all-zero id too)."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    match = _TRACEPARENT.match(text)
    return text if match and match.group("trace_id") != _INVALID_TRACE_ID else None


def trace_id_of(traceparent: object) -> str | None:
    """The trace id of a valid `traceparent`, else None."""
    text = valid_traceparent(traceparent)
    return text.split("-")[1] if text else None


def trace_id_from(meta: Mapping[str, Any] | None, headers: Mapping[str, str]) -> str:
    """The caller's trace id; when the caller sent none, the trace this service started for the request
    (so every record of one request carries the same id, the one its spans are under); a fresh one only
    outside any trace. Every audit record gets one."""
    for carrier in (meta or {}, headers):
        trace_id = trace_id_of(carrier.get("traceparent"))
        if trace_id is not None:
            return trace_id
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        return format(current.trace_id, "032x")
    return secrets.token_hex(16)
