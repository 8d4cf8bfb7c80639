"""The verified caller of one `/mcp` request, handed from the authorization layer to the federation.

The layer (`gateway.mcp_guard`) verifies the token and decides each tool call before the MCP server sees
the request; it leaves its findings in the ASGI scope's `state`, where the federation reads them to label
its audit records and to show each caller only the tools it may call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.requests import Request

from accord.tokens import AccessClaims
from gateway.policy import Subject

CALLER_KEY = "accord.caller"
AUTHORIZED_CALL_KEY = "accord.authorized_call"
AUTHORIZED_READ_KEY = "accord.authorized_read"
# The JSON-RPC message as the layer parsed it (the endpoint routes on it without parsing it again).
MESSAGE_KEY = "accord.mcp_message"


@dataclass(frozen=True)
class Caller:
    claims: AccessClaims
    subject: Subject
    # The key the token was signed with, where the verifier tracks keys: what stays open on the
    # caller's behalf (a subscription) ends when that key is no longer trusted.
    key_id: str | None = None

    @property
    def client_id(self) -> str:
        return self.claims.client_id

    @property
    def rate_key(self) -> str:
        return f"{self.subject.issuer or ''}|{self.subject.client_id}"


@dataclass(frozen=True)
class AuthorizedCall:
    """A `tools/call` the layer allowed: exactly this tool with exactly these arguments."""

    caller: Caller
    tool: str
    arguments: Mapping[str, Any]
    rule: str | None


@dataclass(frozen=True)
class AuthorizedRead:
    """A resource read, prompt get or completion the layer allowed: this method, of this upstream's
    `target` (a resource URI, a prompt's full name, or a completion's reference)."""

    caller: Caller
    method: str
    upstream: str
    target: str


def authorized_read_of(request: Request | None) -> AuthorizedRead | None:
    read = _state(request).get(AUTHORIZED_READ_KEY)
    return read if isinstance(read, AuthorizedRead) else None


def _state(request: Request | None) -> Mapping[str, Any]:
    if request is None:
        return {}
    state = request.scope.get("state")
    return state if isinstance(state, Mapping) else {}


def caller_of(request: Request | None) -> Caller | None:
    caller = _state(request).get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else None


def authorized_call_of(request: Request | None) -> AuthorizedCall | None:
    call = _state(request).get(AUTHORIZED_CALL_KEY)
    return call if isinstance(call, AuthorizedCall) else None


def session_owner(caller: Caller) -> AuthenticatedUser:
    """The caller as the MCP server's session manager identifies a session's owner: client, issuer and
    subject. A session is served only to that identity; the token itself is not kept (a client renews
    short-lived tokens within one session)."""
    claims = caller.claims
    token = AccessToken(
        token="",
        client_id=claims.client_id,
        scopes=sorted(claims.scopes),
        expires_at=None,
        subject=claims.sub,
        claims={"iss": claims.iss},
    )
    return AuthenticatedUser(token)
