"""From a task's grant to the bearer token of its tool calls, out of sight of the skill's code.

The orchestrator sends each step with a task grant (message metadata `accord.grant`). The executor gives
the skill's `ToolBox` a token provider for that grant: on the first tool call it exchanges the grant at the
gateway (RFC 8693) for a just-in-time access token to the gateway's `/mcp`, scoped to the skill's declared
tools, and reuses that token until shortly before it expires. A task without a grant gets a provider that
refuses every tool call before any network traffic: deny by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import jwt

from accord.agent.tools import TokenProvider
from accord.errors import AccordError
from accord.gateway_client import AccessToken, GatewayClient, tool_scope


class GrantTokens(Protocol):
    """Turns the grant one task carries into the token provider of that task's tool calls."""

    def for_grant(self, grant: str) -> TokenProvider: ...


class NoGrant:
    """The token provider of a task that carries no grant: it may call no tool."""

    async def token(self, tools: Sequence[str]) -> str | None:
        raise AccordError("policy_denied", "the task carries no grant, so it may call no tool")


class GrantExchange:
    """The default `GrantTokens`: exchange each task's grant at the gateway this agent belongs to."""

    def __init__(self, client: GatewayClient, resource: str) -> None:
        self._client = client
        self._resource = resource

    def for_grant(self, grant: str) -> ExchangedToken:
        return ExchangedToken(self._client, grant, self._resource)


class ExchangedToken:
    """The tool token of one task: exchanged from its grant once, reused until shortly before expiry."""

    def __init__(self, client: GatewayClient, grant: str, resource: str) -> None:
        self._client = client
        self._grant = grant
        self._resource = resource
        self._granted = _scopes_named_in(grant)
        self._lock = asyncio.Lock()
        self._tokens: dict[frozenset[str], AccessToken] = {}
        self.exchanges = 0

    def __repr__(self) -> str:
        return f"ExchangedToken(resource={self._resource!r}, exchanges={self.exchanges})"

    async def token(self, tools: Sequence[str]) -> str:
        scopes = self._scopes_for(tools)
        # One exchange however many of the skill's tool calls are in flight at once.
        async with self._lock:
            cached = self._tokens.get(scopes)
            if cached is not None and cached.usable(self._client.now(), self._client.refresh_margin_s):
                return cached.token
            self.exchanges += 1
            exchanged = await self._client.exchange_grant(self._grant, scopes, self._resource)
            self._tokens[scopes] = exchanged
            return exchanged.token

    def _scopes_for(self, tools: Sequence[str]) -> frozenset[str]:
        wanted = frozenset(tool_scope(tool) for tool in tools)
        if self._granted is None:
            return wanted
        # The policy may have dropped some of the skill's tools from the grant. Asking only for what the
        # grant holds keeps the other tools usable; the dropped ones are then refused by the gateway.
        scopes = wanted & self._granted
        if not scopes:
            # An exchange without a scope would yield every scope of the grant: never ask for that.
            raise AccordError("policy_denied", "the task's grant covers none of this skill's tools")
        return scopes


def _scopes_named_in(grant: str) -> frozenset[str] | None:
    """The scopes a grant says it holds, read without verification: they only narrow what we ask for;
    the gateway verifies the grant and decides. None when the grant cannot be read."""
    try:
        claims = jwt.decode(grant, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    scope = claims.get("scope")
    return frozenset(scope.split()) if isinstance(scope, str) else None
