"""The A2A relay assembled: its routes on the gateway's HTTP port, its gRPC server, and its own card.

* JSON-RPC: `POST {gateway}/a2a/relay/jsonrpc`
* HTTP+JSON: `{gateway}/a2a/relay/rest/{agent}/message:send` and the other A2A REST routes
* gRPC: `A2AService` on the gateway's `ACCORD_GRPC_PORT`
* the relay's card, naming those three interfaces: `GET {gateway}/a2a/relay/.well-known/agent-card.json`

The target agent is the A2A tenant on every transport (`AgentInterface.tenant` for an a2a-sdk client).
Callers authenticate with a bearer token of this gateway carrying `a2a:delegate` (HTTP `Authorization`
header, gRPC `authorization` metadata).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultGrpcServerCallContextBuilder
from a2a.server.routes import create_jsonrpc_routes, create_rest_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    ClientCredentialsOAuthFlow,
    OAuth2SecurityScheme,
    OAuthFlows,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    a2a_pb2_grpc,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Router

from accord.a2a_errors import AccordGrpcHandler
from accord.audit import AuditLog
from accord.bearer import CachedTokenVerifier, keys_still_trusted
from accord.card_route import CardEndpoint
from accord.service import BackgroundServer
from gateway.oauth import OAuthDeps
from gateway.policy import WatchedPolicy
from gateway.relay.credentials import RelayCredentials
from gateway.relay.delegation import DelegationPolicy, load_delegation
from gateway.relay.directory import AgentDirectory
from gateway.relay.envelopes import EnvelopeSigner
from gateway.relay.gate import DELEGATE_SCOPE, RelayGate
from gateway.relay.guard import JSONRPC_PATH, REST_PATH, RelayGuard
from gateway.relay.handler import ADMISSION_KEY, RelayCore, RelayHandler, RelayLimits
from gateway.relay.links import AgentLinks
from gateway.relay.tasks import RelayedTasks
from gateway.settings import GatewaySettings

RELAY_PATH = "/a2a/relay"
RELAY_CARD_PATH = RELAY_PATH + "/.well-known/agent-card.json"
RELAY_NAME = "gateway-relay"
_FORWARDED_METADATA = ("authorization", "traceparent")


class _AdmittedContextBuilder(DefaultServerCallContextBuilder):
    """Hands the guard's admission of the request to the handler."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        admission = request.scope.get("state", {}).get(ADMISSION_KEY)
        if admission is not None:
            context.state[ADMISSION_KEY] = admission
        return context


class _GrpcCallerContextBuilder(DefaultGrpcServerCallContextBuilder):
    """Hands the caller's bearer and trace context (gRPC metadata) to the handler, which admits the call."""

    def build(self, context: grpc.aio.ServicerContext) -> ServerCallContext:  # type: ignore[type-arg]
        call_context = super().build(context)
        headers: dict[str, str | None] = {}
        for key, value in context.invocation_metadata() or ():
            name = key.lower()
            if name in _FORWARDED_METADATA:
                text = value if isinstance(value, str) else value.decode(errors="replace")
                # A repeated credential is ambiguous: treat it as none.
                headers[name] = None if name in headers else text
        call_context.state["headers"] = {k: v for k, v in headers.items() if v is not None}
        return call_context


class Relay:
    def __init__(self, settings: GatewaySettings, oauth: OAuthDeps, audit: AuditLog) -> None:
        self._settings = settings
        issuer = oauth.config.issuer
        self.delegation: WatchedPolicy[DelegationPolicy] = WatchedPolicy(
            settings.gateway_delegation_file, audit, load_delegation, settings.gateway_policy_reload_seconds
        )
        verifier = CachedTokenVerifier(
            oauth.access_token_verifier(audience=settings.base_url),
            own_issuer=issuer,
            leeway_s=oauth.config.leeway_s,
            key_trusted=keys_still_trusted({issuer: oauth.ring}),
        )
        self.directory = AgentDirectory(settings.registry_url, settings.gateway_relay_registry_ttl_seconds)
        self.gate = RelayGate(
            verifier, self.delegation, self.directory, oauth.clients, oauth.grants.bound, audit
        )
        self.core = RelayCore(
            gate=self.gate,
            grants=oauth.grants,
            signer=EnvelopeSigner(oauth.ring, issuer, settings.gateway_relay_signature_lifetime_seconds),
            credentials=RelayCredentials(oauth.ring, issuer),
            links=AgentLinks(settings.gateway_relay_timeout_seconds),
            tasks=RelayedTasks(oauth.grants),
            audit=audit,
            limits=RelayLimits(
                mcp_resource=settings.mcp_resource,
                max_deadline_s=settings.gateway_relay_max_deadline_seconds,
                timeout_s=settings.gateway_relay_timeout_seconds,
            ),
        )

    def routes(self) -> list[BaseRoute]:
        """The card route, then the guarded A2A routes (include them before any root mount)."""
        builder = _AdmittedContextBuilder()
        jsonrpc = RelayHandler(self.core, TransportProtocol.JSONRPC)
        rest = RelayHandler(self.core, TransportProtocol.HTTP_JSON)
        inner = Router(
            routes=[
                *create_jsonrpc_routes(jsonrpc, rpc_url=JSONRPC_PATH, context_builder=builder),
                # Under its own Mount: at the root the SDK's `/{tenant}` catch-all would shadow the rest.
                Mount(REST_PATH, routes=create_rest_routes(rest, context_builder=builder)),
            ]
        )
        guard = RelayGuard(
            inner,
            self.gate,
            self._settings.gateway_relay_max_body_bytes,
            self._settings.gateway_relay_max_json_depth,
        )
        card = self.card()

        async def served() -> AgentCard:
            return card

        card_routes = CardEndpoint(served, cache_control="no-cache").routes((RELAY_CARD_PATH,))
        return [*card_routes, Mount(RELAY_PATH, app=guard)]

    def card(self) -> AgentCard:
        """The relay's own card: where its three interfaces are and how callers authenticate."""
        settings = self._settings
        base = settings.base_url
        interfaces = [
            AgentInterface(
                url=base + RELAY_PATH + JSONRPC_PATH,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_1_0,
            ),
            AgentInterface(
                url=base + RELAY_PATH + REST_PATH,
                protocol_binding=TransportProtocol.HTTP_JSON,
                protocol_version=PROTOCOL_VERSION_1_0,
            ),
        ]
        if settings.grpc_port is not None:
            interfaces.append(
                AgentInterface(
                    url=settings.grpc_address(settings.grpc_port),
                    protocol_binding=TransportProtocol.GRPC,
                    protocol_version=PROTOCOL_VERSION_1_0,
                )
            )
        flow = ClientCredentialsOAuthFlow(
            token_url=base + "/oauth/token", scopes={DELEGATE_SCOPE: "relay messages to agents"}
        )
        scheme = SecurityScheme(
            oauth2_security_scheme=OAuth2SecurityScheme(flows=OAuthFlows(client_credentials=flow))
        )
        return AgentCard(
            name=RELAY_NAME,
            description=(
                "The gateway's A2A relay: name the target agent as the A2A tenant; every message is "
                "authorized, granted its tools, signed and forwarded, and every reply is signed"
            ),
            version="1.0.0",
            supported_interfaces=interfaces,
            capabilities=AgentCapabilities(streaming=True),
            default_input_modes=["application/json"],
            default_output_modes=["application/json"],
            security_schemes={"gateway": scheme},
            security_requirements=[
                SecurityRequirement(schemes={"gateway": StringList(list=[DELEGATE_SCOPE])})
            ],
        )

    def grpc_server(self, host: str, port: int) -> BackgroundServer:
        handler = RelayHandler(self.core, TransportProtocol.GRPC)

        @asynccontextmanager
        async def running() -> AsyncIterator[None]:
            server = grpc.aio.server()
            servicer = AccordGrpcHandler(handler, context_builder=_GrpcCallerContextBuilder())
            a2a_pb2_grpc.add_A2AServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
            if server.add_insecure_port(f"{host}:{port}") == 0:
                raise OSError(f"cannot bind the relay's gRPC port {host}:{port}")
            await server.start()
            try:
                yield
            finally:
                await server.stop(grace=2)

        return running

    async def aclose(self) -> None:
        await self.core.links.aclose()
        await self.directory.aclose()
