"""What the gateway keeps with a caller's MCP connection: a handshake session's log level, and what must
end with the session (its resource watches).

The SDK's request context reaches its connection only through the session object; `_connection` is
the one place that relies on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from starlette.requests import Request


def _connection(ctx: ServerRequestContext[Any, Any]) -> Any:
    return getattr(ctx.session, "_connection", None)


def connection_state(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
    """The per-connection scratch state of a request's connection (a session's lives as long as it)."""
    state = getattr(_connection(ctx), "state", None)
    return state if isinstance(state, dict) else {}


def on_connection_end(ctx: ServerRequestContext[Any, Any], key: str, callback: Callable[[], None]) -> None:
    """Run `callback` when the request's connection closes (once per `key` and connection)."""
    stack = getattr(_connection(ctx), "exit_stack", None)
    state = connection_state(ctx)
    if stack is None or state.get(key):
        return
    stack.callback(callback)
    state[key] = True


def session_of(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The session a request was served in (the SDK checked it exists and belongs to the caller), or None
    for a request served on its own."""
    request = ctx.request if isinstance(ctx.request, Request) else None
    session = request.headers.get(MCP_SESSION_ID_HEADER) if request is not None else None
    own = getattr(_connection(ctx), "session_id", None)
    return session if session is not None and session == own else None
