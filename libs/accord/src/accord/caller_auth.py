"""Who may call a service's API: bearer access tokens from the gateway's authorization server (or another
trusted OIDC issuer), checked at the edge before anything else runs.

The orchestrator is a resource server like the gateway's `/mcp`. Its REST API and its A2A surface accept
only a valid token addressed to it (`aud` = its resource URL, as RFC 8707 asks the client to name it) that
carries the scope the operation needs:

| operation                                   | scope         |
|---------------------------------------------|---------------|
| REST `GET /v1/...`                          | `runs:read`   |
| REST `POST /v1/workflows/{name}/runs`       | `runs:start`  |
| REST `POST /v1/runs/{id}/review`, `.../approvals/{gate}` | `runs:review` |
| A2A, every method, on every transport       | `runs:start`  |

The gateway's relay calls with a token of its own (`aud` = `urn:accord:agent:<name>`, scope `a2a:relayed`,
`sub` = the client it relays for, `act` = the relay): never the caller's token, and good for the A2A
surface only. The caller becomes the request's user (Starlette's `scope["user"]`, or `context.user` on
gRPC), so the A2A task store keeps every caller's tasks its own and runs name who started or reviewed them.

Refusals: 401 `unauthenticated` (no usable bearer) or `invalid_token` (with the token error's cause), 403
`insufficient_scope` naming the scope. Over HTTP they carry a Bearer challenge pointing at the RFC 9728
metadata; every one is audited with the caller's trace id. The card, health, readiness and metrics stay
public, as does the metadata itself.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import grpc
from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import RequestHandler
from google.protobuf.message import Message as ProtoMessage
from starlette.authentication import AuthCredentials, BaseUser
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from accord.a2a_errors import (
    AccordGrpcHandler,
    AccordRefusal,
    HttpTransport,
    http_refusal_body,
    send_http_refusal,
)
from accord.audit import AuditEvent, AuditLog
from accord.bearer import CachedTokenVerifier, bearer_of
from accord.cards import JSONRPC_PATH, REST_PATH
from accord.errors import Refusal
from accord.tokens import AccessClaims, TokenError
from accord.trace_context import trace_id_of

RUNS_READ = "runs:read"
RUNS_START = "runs:start"
RUNS_REVIEW = "runs:review"
CALLER_SCOPES = (RUNS_START, RUNS_READ, RUNS_REVIEW)
RELAYED_SCOPE = "a2a:relayed"
ACTION = "api.authenticate"
API_PREFIX = "/v1/"
_REVIEW_PATH = re.compile(r"^/v1/runs/[^/]+/(review|approvals/[^/]+)$")

Surface = Literal["api", "a2a"]
_Response = TypeVar("_Response")


def relay_audience(agent: str) -> str:
    """The audience of the relay's own tokens for one agent (never an http URL: no client can ask for it)."""
    return f"urn:accord:agent:{agent}"


class AuthenticatedCaller(BaseUser):
    """A verified caller. Its `display_name` (the token's subject) owns the A2A tasks it creates."""

    def __init__(self, claims: AccessClaims, relayed: bool) -> None:
        self.claims = claims
        self.relayed = relayed

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.claims.sub

    @property
    def identity(self) -> str:
        """Who acts, for audit and run records: the client, and the relay when it relays for one."""
        via = f" via {self.claims.act_chain[0]}" if self.relayed and self.claims.act_chain else ""
        return f"{self.claims.client_id}{via}"


@dataclass(frozen=True)
class CallDescription:
    """What the audit record of a refusal says about the call (never its token)."""

    surface: Surface
    transport: str
    method: str
    path: str
    traceparent: str | None = None


# A refused caller: the shared refusal (its cause for the audit record, its scope for the challenge).
CallerRefused = Refusal


@dataclass(frozen=True)
class RelayTrust:
    """Whose relay tokens count: the gateway's (`issuer`), addressed to this service (`audience`)."""

    issuer: str
    audience: str


class CallerAuthenticator:
    """Turns an `Authorization` header into an `AuthenticatedCaller` allowed the scope, or a refusal.

    The verifier accepts tokens addressed to `resource` and, with `relay`, to the relay audience; a token
    counts as the relay's only when the gateway issued it, and as a caller's only when it names `resource`.
    """

    def __init__(
        self,
        verifier: CachedTokenVerifier,
        resource: str,
        relay: RelayTrust | None,
        audit: AuditLog,
        service: str,
    ) -> None:
        self._verifier = verifier
        self._resource = resource
        self._relay = relay
        self._audit = audit
        self._service = service

    async def authenticate(
        self, authorization: str | None, scope: str, call: CallDescription
    ) -> AuthenticatedCaller:
        """The caller, or `CallerRefused` (already audited)."""
        claims: AccessClaims | None = None
        try:
            token = bearer_of(authorization)
            if token is None:
                raise CallerRefused("unauthenticated", "a bearer token is required")
            try:
                claims = await self._verifier.verify(token)
            except TokenError as error:
                raise CallerRefused("invalid_token", error.detail, cause=error.cause) from None
            caller = AuthenticatedCaller(claims, self._relayed(claims))
            if not self._allows(caller, scope, call.surface):
                raise CallerRefused("insufficient_scope", f"the token lacks the scope {scope}", scope=scope)
        except CallerRefused as refused:
            await self._record(refused, claims, scope, call)
            raise
        return caller

    def _relayed(self, claims: AccessClaims) -> bool:
        relay = self._relay
        return relay is not None and claims.iss == relay.issuer and relay.audience in claims.aud

    def _allows(self, caller: AuthenticatedCaller, scope: str, surface: Surface) -> bool:
        if caller.relayed:
            return surface == "a2a" and caller.claims.has_scope(RELAYED_SCOPE)
        return self._resource in caller.claims.aud and caller.claims.has_scope(scope)

    async def _record(
        self, refused: CallerRefused, claims: AccessClaims | None, scope: str, call: CallDescription
    ) -> None:
        details = {
            "service": self._service,
            "surface": call.surface,
            "transport": call.transport,
            "method": call.method,
            "path": call.path[:256],
            "required_scope": scope,
            **({"cause": refused.cause} if refused.cause else {}),
            **({"client_id": claims.client_id} if claims is not None else {}),
        }
        await self._audit.append(
            AuditEvent(
                actor=claims.sub if claims is not None else "anonymous",
                action=ACTION,
                outcome="denied",
                reason=refused.reason,
                trace_id=trace_id_of(call.traceparent),
                details=details,
            )
        )


def required_scope(method: str, path: str) -> tuple[Surface, str] | None:
    """The surface and scope an HTTP call needs; None for what stays public (card, health, metadata)."""
    if path == JSONRPC_PATH or path.startswith(REST_PATH + "/"):
        return "a2a", RUNS_START
    if not path.startswith(API_PREFIX):
        return None
    if method in ("GET", "HEAD"):
        return "api", RUNS_READ
    return "api", RUNS_REVIEW if _REVIEW_PATH.match(path) else RUNS_START


class CallerGuard:
    """A pure-ASGI layer in front of the API and the A2A HTTP transports (SSE streams pass through)."""

    def __init__(self, app: ASGIApp, authenticator: CallerAuthenticator, resource_metadata: str) -> None:
        self.app = app
        self._authenticator = authenticator
        self._resource_metadata = resource_metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        needed = required_scope(scope.get("method", ""), path) if path else None
        if needed is None:
            await self.app(scope, receive, send)
            return
        surface, wanted = needed
        headers = Headers(scope=scope)
        transport = _transport(path)
        call = CallDescription(surface, transport, scope["method"], path, headers.get("traceparent"))
        try:
            caller = await self._authenticator.authenticate(
                _one(headers.getlist("authorization")), wanted, call
            )
        except CallerRefused as refused:
            await self._refuse(send, transport, refused)
            return
        scope["user"] = caller
        scope["auth"] = AuthCredentials(sorted(caller.claims.scopes))
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, transport: str, refused: CallerRefused) -> None:
        body: dict[str, Any]
        if transport in ("jsonrpc", "rest"):
            a2a_transport: HttpTransport = "jsonrpc" if transport == "jsonrpc" else "rest"
            body = http_refusal_body(a2a_transport, refused, refused.cause)
        else:
            body = refused.to_body()
            if refused.cause:
                body["error"]["cause"] = refused.cause
        await send_http_refusal(
            send, refused, body, scope=refused.scope, resource_metadata=self._resource_metadata
        )


class _GrpcCaller(User):
    """An `AuthenticatedCaller` as the a2a-sdk's gRPC side sees users."""

    def __init__(self, caller: AuthenticatedCaller) -> None:
        self.caller = caller

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.caller.display_name


class AuthenticatingGrpcHandler(AccordGrpcHandler):
    """The A2A gRPC servicer, authenticating every call from its `authorization` metadata first.

    The SDK builds a call's context synchronously, so the check wraps the two places every method passes
    through (`_handle_unary`, `_handle_stream`, internal to the pinned a2a-sdk) instead; a refusal is an
    `AccordRefusal`, answered UNAUTHENTICATED or PERMISSION_DENIED with the reason in the ErrorInfo.
    """

    def __init__(self, request_handler: RequestHandler, authenticator: CallerAuthenticator) -> None:
        super().__init__(request_handler)
        self._authenticator = authenticator

    async def _handle_unary(
        self,
        request: ProtoMessage,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        handler_func: Callable[[ServerCallContext], Awaitable[_Response]],
        default_response: _Response,
    ) -> _Response:
        async def authenticated(server_context: ServerCallContext) -> _Response:
            await self._authenticate(request, context, server_context)
            return await handler_func(server_context)

        return await super()._handle_unary(request, context, authenticated, default_response)

    async def _handle_stream(
        self,
        request: ProtoMessage,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        handler_func: Callable[[ServerCallContext], AsyncIterable[_Response]],
    ) -> AsyncIterable[_Response]:
        async def authenticated(server_context: ServerCallContext) -> AsyncIterator[_Response]:
            await self._authenticate(request, context, server_context)
            async for item in handler_func(server_context):
                yield item

        async for item in super()._handle_stream(request, context, authenticated):
            yield item

    async def _authenticate(
        self,
        request: ProtoMessage,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        server_context: ServerCallContext,
    ) -> None:
        metadata = [(k.lower(), v) for k, v in context.invocation_metadata() or ()]
        authorization = [_text(v) for k, v in metadata if k == "authorization"]
        traceparent = next((_text(v) for k, v in metadata if k == "traceparent"), None)
        method = type(request).__name__.removesuffix("Request")
        call = CallDescription("a2a", "grpc", method, "", traceparent)
        try:
            caller = await self._authenticator.authenticate(_one(authorization), RUNS_START, call)
        except CallerRefused as refused:
            raise AccordRefusal(refused, refused.cause) from None
        server_context.user = _GrpcCaller(caller)


def caller_scopes(context: ServerCallContext | None) -> frozenset[str]:
    """The scopes of the call's authenticated caller (none for a call no guard authenticated)."""
    if context is None:
        return frozenset()
    user = context.user
    if isinstance(user, _GrpcCaller):
        return user.caller.claims.scopes
    auth = context.state.get("auth")
    return frozenset(auth.scopes) if isinstance(auth, AuthCredentials) else frozenset()


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode(errors="replace")


def _transport(path: str) -> str:
    if path == JSONRPC_PATH:
        return "jsonrpc"
    return "rest" if path.startswith(REST_PATH + "/") else "api"


def _one(values: Sequence[str]) -> str | None:
    """The one Authorization header; two of them are no credential at all (which one would count?)."""
    return values[0] if len(values) == 1 else None


__all__ = [
    "CALLER_SCOPES",
    "RELAYED_SCOPE",
    "RUNS_READ",
    "RUNS_REVIEW",
    "RUNS_START",
    "AuthenticatedCaller",
    "AuthenticatingGrpcHandler",
    "CallDescription",
    "CallerAuthenticator",
    "CallerGuard",
    "CallerRefused",
    "RelayTrust",
    "caller_scopes",
    "relay_audience",
    "required_scope",
]
