"""The orchestrator's side of the gateway's A2A relay: how it reaches agents, and how it trusts replies.

Every step goes through the relay. The orchestrator reads the relay's card once (from the configured
gateway URL) and calls each agent through it: the agent's registry card with its interfaces replaced by
the relay's, the agent named as the A2A tenant, on the configured transport (JSON-RPC, HTTP+JSON or gRPC;
unary or streaming). It authenticates with its client-credentials token for the scope `a2a:delegate`.

Every reply object must carry the relay's signature for this orchestrator (`ReplyVerifier`): a trusted
gateway key (the gateway's JWKS, from the configured URL), addressed to this client, in date, never seen
before, from the agent that was called, about this very run and step. Anything else is `signature_invalid`.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
from dataclasses import dataclass

import grpc
import httpx
from a2a.client import A2AClientTimeoutError, Client, ClientConfig, ClientFactory
from a2a.types import AgentCard, AgentInterface

from accord.a2a_errors import refusal_reason
from accord.cards import card_from_dict
from accord.errors import AccordError
from accord.gateway_client import AccessToken, GatewayClient
from accord.message_signing import Envelope, MessageVerifier, Signable, SignatureError
from accord.registry_client import RegisteredAgent
from orchestrator.step_grants import StepRef

logger = logging.getLogger(__name__)

DELEGATE_SCOPE = "a2a:delegate"
RELAY_CARD_PATH = "/a2a/relay/.well-known/agent-card.json"
_HTTP_STATUS = re.compile(r"HTTP Error (\d{3})")
_GRPC_STATUS = re.compile(r"gRPC Error ([A-Z_]+)")
_STATUS_REASONS = {
    400: "malformed_json",
    401: "unauthenticated",
    403: "policy_denied",
    404: "not_found",
    413: "body_too_large",
    422: "invalid_input",
    429: "rate_limited",
}
_UNREACHABLE_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"})


@dataclass
class _Refusal:
    """What the relay said when it refused a call at HTTP level (its body names the reason)."""

    reason: str | None = None
    cause: str | None = None


_refusal: contextvars.ContextVar[_Refusal | None] = contextvars.ContextVar(
    "accord_relay_refusal", default=None
)


async def _read_refusal(response: httpx.Response) -> None:
    """httpx response hook: the a2a-sdk client drops an error response's body, so read its reason here."""
    holder = _refusal.get()
    if holder is None or response.status_code < 400:
        return
    await response.aread()
    try:
        body = json.loads(response.content)
    except ValueError:
        return
    error = body.get("error") if isinstance(body, dict) else None
    details = (error.get("data") or error.get("details")) if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        metadata = detail.get("metadata") if isinstance(detail, dict) else None
        if isinstance(metadata, dict) and isinstance(metadata.get("reason"), str):
            holder.reason = metadata["reason"]
            holder.cause = metadata.get("cause") if isinstance(metadata.get("cause"), str) else None
            return


class ReplyVerifier:
    """Checks that a relayed reply object is the relay's, for this orchestrator, about this step."""

    def __init__(self, verifier: MessageVerifier) -> None:
        self._verifier = verifier

    async def check(self, reply: Signable, agent: str, step: StepRef) -> Envelope:
        try:
            envelope = await self._verifier.verify(reply)
        except SignatureError as error:
            raise AccordError(
                "signature_invalid", f"reply from {agent} refused: {error.detail}", cause=error.cause
            ) from None
        if envelope.sub != agent:
            raise AccordError(
                "signature_invalid", f"reply signed for {envelope.sub}, not {agent}", cause="wrong_agent"
            )
        if (envelope.wf, envelope.task) != (step.run_id, step.step_id):
            raise AccordError(
                "signature_invalid", f"reply from {agent} is about another step", cause="wrong_step"
            )
        return envelope


class RelayLink:
    """The relay as this orchestrator reaches it: one A2A client per agent, and the caller's token."""

    def __init__(
        self,
        gateway: GatewayClient,
        replies: ReplyVerifier,
        *,
        transport: str,
        streaming: bool,
        timeout_s: float,
    ) -> None:
        self.gateway = gateway
        self.replies = replies
        self._transport = transport
        self._streaming = streaming
        self._http = httpx.AsyncClient(timeout=timeout_s, event_hooks={"response": [_read_refusal]})
        self._interfaces: list[AgentInterface] | None = None
        self._lock = asyncio.Lock()
        self._clients: dict[tuple[str, str], Client] = {}

    @property
    def streaming(self) -> bool:
        return self._streaming

    async def token(self) -> AccessToken:
        """This orchestrator's delegation token (cached by the gateway client until shortly before expiry)."""
        return await self.gateway.client_credentials_token((DELEGATE_SCOPE,), self.gateway.base_url)

    def forget(self, token: AccessToken) -> None:
        """The relay no longer accepts this token (e.g. its key was retired): the next call gets another."""
        self.gateway.forget_token((DELEGATE_SCOPE,), self.gateway.base_url, token)

    async def client_for(self, agent: RegisteredAgent) -> Client:
        key = (agent.name, agent.card_url)
        client = self._clients.get(key)
        if client is None:
            card = AgentCard()
            card.CopyFrom(agent.card)
            del card.supported_interfaces[:]
            for interface in await self._relay_interfaces():
                relayed = card.supported_interfaces.add()
                relayed.CopyFrom(interface)
                relayed.tenant = agent.name
            config = ClientConfig(
                streaming=self._streaming,
                httpx_client=self._http,
                grpc_channel_factory=grpc.aio.insecure_channel,
                supported_protocol_bindings=[self._transport],
            )
            client = ClientFactory(config).create(card)
            self._clients[key] = client
        return client

    async def drop(self, agent: RegisteredAgent) -> None:
        client = self._clients.pop((agent.name, agent.card_url), None)
        if client is not None:
            await _close(client)

    async def _relay_interfaces(self) -> list[AgentInterface]:
        async with self._lock:
            if self._interfaces is None:
                url = self.gateway.base_url + RELAY_CARD_PATH
                try:
                    response = await self._http.get(url)
                    response.raise_for_status()
                    card = card_from_dict(response.json())
                except (httpx.HTTPError, ValueError) as exc:
                    raise AccordError(
                        "upstream_unavailable", "the gateway relay's card cannot be read"
                    ) from exc
                offered = [i for i in card.supported_interfaces if i.protocol_binding == self._transport]
                if not offered:
                    raise AccordError(
                        "upstream_unavailable", f"the gateway relay offers no {self._transport}"
                    )
                self._interfaces = list(card.supported_interfaces)
            return self._interfaces

    def capture(self) -> contextvars.Token[_Refusal | None]:
        """Start listening for the relay's reason in refusals of calls made in this context."""
        return _refusal.set(_Refusal())

    def captured(self) -> _Refusal:
        return _refusal.get() or _Refusal()

    def release(self, token: contextvars.Token[_Refusal | None]) -> None:
        _refusal.reset(token)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await _close(client)
        await self._http.aclose()
        await self.gateway.aclose()


def relay_failure(exc: BaseException, captured: _Refusal, agent: str) -> AccordError:
    """The reason a relayed call failed: the relay's or agent's own reason when it gave one, else what
    the transport shows (an HTTP or gRPC status, or the relay being unreachable)."""
    if isinstance(exc, A2AClientTimeoutError):
        return AccordError("timeout", f"{agent} did not answer through the relay in time")
    found = (captured.reason, captured.cause) if captured.reason else refusal_reason(exc)
    if found is not None and found[0]:
        reason, cause = found
        return AccordError(reason, f"the relay refused the call to {agent} ({reason})", cause=cause)
    text = str(exc)
    status = _HTTP_STATUS.search(text)
    if status is not None:
        code = int(status.group(1))
        reason = _STATUS_REASONS.get(code, "agent_unavailable" if code >= 500 else "invalid_input")
        return AccordError(reason, f"the relay answered HTTP {code} for {agent}")
    grpc_status = _GRPC_STATUS.search(text)
    if grpc_status is not None and grpc_status.group(1) not in _UNREACHABLE_GRPC:
        return AccordError("agent_unavailable", f"the relay answered gRPC {grpc_status.group(1)} for {agent}")
    return AccordError("upstream_unavailable", "the gateway relay could not be reached")


async def _close(client: Client) -> None:
    try:
        await client.close()
    except Exception as exc:  # one client failing to close must not keep the others open
        logger.warning("A2A client did not close cleanly", extra={"error": type(exc).__name__})


__all__ = ["DELEGATE_SCOPE", "RelayLink", "ReplyVerifier", "relay_failure"]
