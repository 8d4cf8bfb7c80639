"""The `/mcp` endpoint's two ways of serving a request: on its own, or in a session.

Most requests need nothing from the gateway but an answer, and are served on their own by whichever replica
gets them: every 2026-07-28 request, and a request of an older version sent without a session. Those are
answered with JSON by a stateless manager, which is also the fastest path.

What an upstream sends back while a call runs (progress, log messages, and in a handshake-version session
elicitation and sampling requests) needs a stream to travel on, and a handshake-version client's answer to
such a request needs a session to find its way back. So:

- a handshake client's `initialize` opens a session, and everything sent with its `Mcp-Session-Id` is
  served in it, as a JSON response or an SSE stream that carries what the upstream sends back. The session
  lives on the replica that opened it (route by `Mcp-Session-Id` behind a load balancer), is served only to
  the identity that opened it, and is closed when idle;
- a 2026-07-28 request that asks for progress or log messages (`_meta.progressToken`, the log-level key)
  is answered as an SSE stream once something arrives for it, still without a session.

Elicitation and sampling for 2026-07-28 callers need neither: they travel as an `input_required` result
and a retried request (`gateway.call_relay`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from mcp.server import Server
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from gateway.caller import MESSAGE_KEY


def needs_stream(message: Mapping[str, Any] | None) -> bool:
    """Whether a request asks for something the upstream sends while the call runs."""
    if message is None:
        return True
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, Mapping) else None
    return isinstance(meta, Mapping) and ("progressToken" in meta or LOG_LEVEL_META_KEY in meta)


def wants_session(scope: Scope, message: Mapping[str, Any] | None) -> bool:
    """Whether a request goes to the session manager (see the module's docstring)."""
    headers = Headers(scope=scope)
    if MCP_SESSION_ID_HEADER in headers or scope["method"] != "POST":
        return True
    version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
    if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        return needs_stream(message)
    return message is None or message.get("method") == "initialize"


class McpEndpoint:
    """The ASGI app at `/mcp`: a stateless JSON manager and a session manager over one MCP server."""

    def __init__(
        self,
        server: Server[Any],
        transport_security: TransportSecuritySettings,
        session_idle_seconds: float,
        max_sessions: int,
    ) -> None:
        self.stateless = StreamableHTTPSessionManager(
            app=server, json_response=True, stateless=True, security_settings=transport_security
        )
        self.sessions = StreamableHTTPSessionManager(
            app=server,
            json_response=False,
            stateless=False,
            security_settings=transport_security,
            session_idle_timeout=session_idle_seconds,
            max_sessions=max_sessions,
        )
        # The manager keeps each session's owner only privately. The per-client session cap and the
        # session's subscriptions depend on reading it: an SDK without it must fail here, not quietly.
        owners = getattr(self.sessions, "_session_owners", None)
        if not isinstance(owners, dict):
            raise RuntimeError("this MCP SDK's session manager does not keep session owners")
        self._owners: dict[str, object] = owners

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Both managers, started and stopped together (each enters the server's lifespan)."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.sessions.run())
            await stack.enter_async_context(self.stateless.run())
            yield

    def sessions_of(self, owner: AuthenticatedUser) -> int:
        """The open sessions `owner` opened."""
        wanted = authorization_context(owner)
        return sum(1 for opener in self._owners.values() if opener == wanted)

    def owned_by(self, session: str, owner: AuthenticatedUser) -> bool:
        """Whether `owner` opened `session` (the manager serves a session to its opener only)."""
        return self._owners.get(session) == authorization_context(owner)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state")
        message = state.get(MESSAGE_KEY) if isinstance(state, Mapping) else None
        manager = self.sessions if wants_session(scope, message) else self.stateless
        await manager.handle_request(scope, receive, send)
