"""Serving an A2A agent on JSON-RPC, HTTP+JSON and gRPC with its card at both well-known paths.

The served card is signed by the agent's publisher (`accord.card_signing`). Unless told otherwise, the
server finds its signer in the environment (`ACCORD_CARD_SIGNING_KEY_FILE`, else the local publisher of
`ACCORD_STATE_DIR`), so services started by `accord up` serve signed cards without any wiring.

With a `SignedMessageGate`, every SendMessage and SendStreamingMessage is verified before the SDK sees it
(signed by a trusted gateway key, addressed to this agent, in date within the skew, never delivered
before): a refused message creates no task, runs no code of the agent's, and is answered with an A2A
`InvalidRequestError` whose data is `{"reason": "signature_invalid", "cause": ...}` (`accord.a2a_errors`).
Every decision is recorded in the agent's own audit log.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import grpc
from a2a.server.agent_execution import AgentExecutor
from a2a.server.context import ServerCallContext
from a2a.server.events import Event
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.types import AgentCard, Message, SendMessageRequest, Task, a2a_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from accord.a2a_errors import AccordGrpcHandler, a2a_refusal
from accord.audit import AuditEvent, AuditLog
from accord.caller_auth import AuthenticatingGrpcHandler, CallerAuthenticator
from accord.card_route import CardEndpoint
from accord.card_signing import PUBLISHER_JWKS_PATH, CardSigner, SignedCard
from accord.cards import JSONRPC_PATH, REST_PATH, WELL_KNOWN_PATHS
from accord.message_signing import Envelope, MessageVerifier, SignatureError
from accord.payloads import requested_skill
from accord.service import BackgroundServer
from accord.trace_context import trace_id_of

CARD_CACHE_CONTROL = "public, max-age=60"
MESSAGE_ACTION = "a2a.message"


# Where a verified message's envelope waits for the executor (`RequestContext.call_context.state`).
ENVELOPE_STATE_KEY = "accord.envelope"


class SignedMessageGate:
    """Admits a message only when its signed envelope verifies; records every decision."""

    def __init__(self, verifier: MessageVerifier, audit: AuditLog, agent: str) -> None:
        self._verifier = verifier
        self._audit = audit
        self._agent = agent

    async def admit(self, message: Message, context: ServerCallContext, method: str) -> Envelope:
        """The verified envelope, or an A2A `InvalidRequestError` (reason `signature_invalid`)."""
        details: dict[str, Any] = {
            "method": method,
            "transport": _transport_of(context),
            "message_id": message.message_id[:128] or None,
            "skill": (requested_skill(message) or "")[:128] or None,
        }
        try:
            envelope = await self._verifier.verify(message)
        except SignatureError as error:
            await self._record(
                "anonymous", "denied", error.reason, _trace_of(context), None, cause=error.cause, **details
            )
            raise a2a_refusal(error, cause=error.cause) from None
        await self._record(
            envelope.sub,
            "allowed",
            None,
            envelope.trace or _trace_of(context),
            envelope.wf,
            task=envelope.task,
            jti=envelope.jti,
            issuer=envelope.iss,
            **details,
        )
        return envelope

    async def _record(
        self, actor: str, outcome: str, reason: str | None, trace: str | None, run: str | None, **details: Any
    ) -> None:
        await self._audit.append(
            AuditEvent(
                actor=actor,
                action=MESSAGE_ACTION,
                outcome=outcome,
                reason=reason,
                trace_id=trace,
                run_id=run,
                details={"agent": self._agent, **{k: v for k, v in details.items() if v is not None}},
            )
        )


def _transport_of(context: ServerCallContext) -> str:
    """Which A2A transport a call came on (the SDK's context builders leave distinct traces)."""
    if "grpc_context" in context.state:
        return "grpc"
    return "jsonrpc" if "request_id" in context.state else "rest"


def call_header(context: ServerCallContext, name: str) -> str | None:
    """A header of the call (lower-case `name`): from the HTTP headers, or the gRPC metadata."""
    headers = context.state.get("headers")
    value = headers.get(name) if isinstance(headers, dict) else None
    grpc_context = context.state.get("grpc_context")
    if value is None and grpc_context is not None:
        for key, item in grpc_context.invocation_metadata() or ():
            if key.lower() == name:
                return item if isinstance(item, str) else item.decode(errors="replace")
    return value if isinstance(value, str) else None


def _trace_of(context: ServerCallContext) -> str | None:
    """The caller's W3C trace id, from the HTTP headers or the gRPC metadata of the call."""
    return trace_id_of(call_header(context, "traceparent"))


class _VerifyingRequestHandler(DefaultRequestHandler):
    """The SDK's request handler behind a `SignedMessageGate`: nothing reaches it unverified."""

    def __init__(self, gate: SignedMessageGate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate = gate

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        context.state[ENVELOPE_STATE_KEY] = await self._gate.admit(params.message, context, "SendMessage")
        result: Task | Message = await super().on_message_send(params, context)
        return result

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        envelope = await self._gate.admit(params.message, context, "SendStreamingMessage")
        context.state[ENVELOPE_STATE_KEY] = envelope
        async for event in super().on_message_send_stream(params, context):
            yield event


class A2AServer:
    """One agent's A2A surface. The handler is shared by all transports, so a task is one task everywhere.

    `signer="env"` (the default) takes the signer from the environment (`CardSigner.from_env`); pass a
    `CardSigner` to choose one, or None to serve the card unsigned. With `message_gate`, only messages
    whose signed envelope it admits are handled (agents); without, any message is. With `callers`, its gRPC
    server admits only authenticated callers (the orchestrator, whose callers hold OAuth tokens: its HTTP
    transports are guarded by `accord.caller_auth.CallerGuard`).
    """

    def __init__(
        self,
        card: AgentCard,
        executor: AgentExecutor,
        task_store: TaskStore | None = None,
        signer: CardSigner | Literal["env"] | None = "env",
        message_gate: SignedMessageGate | None = None,
        callers: CallerAuthenticator | None = None,
    ) -> None:
        self.card = card
        # Over HTTP callers are authenticated by a `CallerGuard` in front of the app; on gRPC here.
        self.callers = callers
        self.signer = CardSigner.from_env() if signer == "env" else signer
        # Signed in place, so the handler's copy of the card (gRPC extended card) is signed too.
        self.signed_card = SignedCard(card, self.signer) if self.signer is not None else None
        if self.signed_card is not None:
            self.signed_card.current()
        handler_args: dict[str, Any] = {
            "agent_executor": executor,
            "task_store": task_store or InMemoryTaskStore(),
            "agent_card": card,
        }
        self.message_gate = message_gate
        self.handler = (
            _VerifyingRequestHandler(message_gate, **handler_args)
            if message_gate is not None
            else DefaultRequestHandler(**handler_args)
        )

    def routes(self) -> list[BaseRoute]:
        routes = CardEndpoint(self._served_card, CARD_CACHE_CONTROL).routes(WELL_KNOWN_PATHS)
        if self.signer is not None:
            routes.append(Route(PUBLISHER_JWKS_PATH, self._publisher_jwks, methods=["GET"]))
        routes.extend(create_jsonrpc_routes(self.handler, rpc_url=JSONRPC_PATH))
        # REST lives under its own Mount: at the root the SDK's `/{tenant}` catch-all would shadow our routes.
        routes.append(Mount(REST_PATH, routes=create_rest_routes(self.handler)))
        return routes

    async def _served_card(self) -> AgentCard:
        # Per request: the card is signed again after any change to it or a rotation of the publisher key.
        return self.signed_card.current() if self.signed_card is not None else self.card

    async def _publisher_jwks(self, _request: Request) -> JSONResponse:
        """For operators: the publisher's public keys. Verifiers use their own trust store, never this."""
        assert self.signer is not None
        return JSONResponse(self.signer.public_jwks(), headers={"Cache-Control": "no-store"})

    def grpc_server(self, host: str, port: int) -> BackgroundServer:
        @asynccontextmanager
        async def running() -> AsyncIterator[None]:
            server = grpc.aio.server()
            servicer = (
                AuthenticatingGrpcHandler(self.handler, self.callers)
                if self.callers is not None
                else AccordGrpcHandler(self.handler)
            )
            a2a_pb2_grpc.add_A2AServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
            if server.add_insecure_port(f"{host}:{port}") == 0:
                raise OSError(f"cannot bind gRPC port {host}:{port}")
            await server.start()
            try:
                yield
            finally:
                await server.stop(grace=2)
                await self.handler.aclose()

        return running
