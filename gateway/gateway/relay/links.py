"""The relay's A2A clients to agents: one per agent, transport and mode, built from the registry's card.

The relay forwards on the transport it was called on (a JSON-RPC call goes to the agent's JSON-RPC
interface, a gRPC call to its gRPC interface), falling back to the card's first interface when the agent
does not offer that binding, and streams only when the caller streams.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
import httpx
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.types import AgentCard

from accord.registry_client import RegisteredAgent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Key:
    agent: str
    interfaces: tuple[tuple[str, str], ...]
    binding: str
    streaming: bool


def _binding_for(card: AgentCard, wanted: str) -> str:
    offered = [interface.protocol_binding for interface in card.supported_interfaces]
    return wanted if wanted in offered or not offered else offered[0]


class AgentLinks:
    def __init__(self, timeout_s: float) -> None:
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._clients: dict[_Key, Client] = {}

    def client(self, agent: RegisteredAgent, binding: str, streaming: bool) -> Client:
        key = _Key(
            agent.name,
            tuple((i.protocol_binding, i.url) for i in agent.card.supported_interfaces),
            _binding_for(agent.card, binding),
            streaming,
        )
        client = self._clients.get(key)
        if client is None:
            config = ClientConfig(
                streaming=streaming,
                httpx_client=self._http,
                grpc_channel_factory=grpc.aio.insecure_channel,
                supported_protocol_bindings=[key.binding],
            )
            client = ClientFactory(config).create(agent.card)
            self._clients[key] = client
        return client

    async def forget(self, agent: RegisteredAgent) -> None:
        """Drop the agent's clients (after a transport failure: the next call reconnects)."""
        for key in [key for key in self._clients if key.agent == agent.name]:
            await self._close(self._clients.pop(key))

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await self._close(client)
        await self._http.aclose()

    @staticmethod
    async def _close(client: Client) -> None:
        try:
            await client.close()
        except Exception as exc:  # a client that cannot close cleanly must not stop the others
            logger.warning("A2A client did not close cleanly", extra={"error": type(exc).__name__})
