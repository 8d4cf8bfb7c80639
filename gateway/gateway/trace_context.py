"""The trace id of an inbound call, from W3C `traceparent` (MCP carries it in `_meta`, HTTP in a header)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?P<trace_id>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_INVALID_TRACE_ID = "0" * 32


def trace_id_from(meta: Mapping[str, Any] | None, headers: Mapping[str, str]) -> str:
    """The caller's trace id, or a fresh one when the caller sent none (every audit record gets one)."""
    for carrier in (meta or {}, headers):
        value = carrier.get("traceparent")
        match = _TRACEPARENT.match(value.strip().lower()) if isinstance(value, str) else None
        if match and match.group("trace_id") != _INVALID_TRACE_ID:
            return match.group("trace_id")
    return secrets.token_hex(16)
