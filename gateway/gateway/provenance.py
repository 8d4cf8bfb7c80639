"""Provenance on tool results: every upstream answer is marked as untrusted data from a named source.

Agents must treat tool output as data, never as instructions; the mark lets them (and their guardrails) see
where each result came from. The gateway's stamp replaces any provenance an upstream claims for itself.
"""

from __future__ import annotations

from datetime import datetime

import mcp_types as types

PROVENANCE_KEY = "accord/provenance"
ERROR_KEY = "accord/error"


def with_provenance(
    result: types.CallToolResult, upstream: str, tool: str, received_at: datetime
) -> types.CallToolResult:
    """The upstream's result with `_meta` extended by the gateway's provenance record."""
    meta = dict(result.meta or {})
    # The upstream's server-identity stamp describes the hop behind the gateway; callers get the gateway's.
    meta.pop(types.SERVER_INFO_META_KEY, None)
    meta[PROVENANCE_KEY] = {
        "upstream": upstream,
        "tool": tool,
        "untrusted": True,
        "received_at": received_at.isoformat(),
    }
    return result.model_copy(update={"meta": meta})


def gateway_error_result(reason: str, detail: str, upstream: str, tool: str) -> types.CallToolResult:
    """A failed call the model should see (not a protocol error): reason-coded, with no internals."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"{reason}: {detail}")],
        is_error=True,
        _meta={ERROR_KEY: {"reason": reason, "upstream": upstream, "tool": tool}},
    )
