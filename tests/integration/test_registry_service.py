"""`python -m registry` as a real process: REST through the shared client and raw HTTP, gRPC through a real
grpc.aio channel, against real signed A2A cards served on loopback.

The harness (a registry process on a state dir, a card server whose agents are signed by that state dir's
local publisher) is `tests.registry_harness`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from accord.card_signing import CardSigner
from accord.cards import card_from_dict
from accord.errors import AccordError
from accord.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from accord.registry_client import RegisteredAgent, RegistryClient
from tests.registry_harness import (
    CardServer,
    Registry,
    card_server_on,
    free_port,
    grpc_refusal,
    registry_process,
    unique,
)


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
async def card_server(registry_state: Path) -> AsyncIterator[CardServer]:
    # The local publisher of the registry's state dir: its JWKS lands in the registry's trust dir.
    async with card_server_on(CardSigner.local(registry_state)) as server:
        yield server


@pytest.fixture(scope="module")
def registry(registry_state: Path) -> Iterator[Registry]:
    with registry_process(registry_state) as running_registry:
        yield running_registry


@pytest.fixture
async def client(registry: Registry) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(registry.base_url) as client:
        yield client


@pytest.fixture
async def stub(registry: Registry) -> AsyncIterator[registry_pb2_grpc.RegistryServiceStub]:
    async with grpc.aio.insecure_channel(registry.grpc_target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        yield registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]


async def test_rest_registration_answers_201_when_new_and_200_when_refreshed(
    registry: Registry, card_server: CardServer
) -> None:
    name = unique("sanctions-agent")
    url = card_server.serve_agent(name, {"sanctions-screening": ["compliance"]})
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        created = await http.post("/v1/agents", json={"card_url": url})
        refreshed = await http.post("/v1/agents", json={"card_url": url})
        fetched = await http.get(f"/v1/agents/{name}")

    assert created.status_code == 201
    assert refreshed.status_code == 200
    body = created.json()
    assert (body["name"], body["card_url"], body["status"]) == (name, url, "active")
    assert body["skills"] == ["sanctions-screening"]
    assert body["tags"] == ["compliance"]
    assert body["card"]["name"] == name
    assert card_from_dict(body["card"]).skills[0].id == "sanctions-screening"
    assert fetched.json() == refreshed.json()


async def test_the_shared_client_registers_discovers_gets_lists_and_removes(
    client: RegistryClient, card_server: CardServer
) -> None:
    skill, tag = unique("credit-file"), unique("credit")
    name = unique("bureau-agent")
    url = card_server.serve_agent(name, {skill: [tag]})

    registered = await client.register(url)
    assert isinstance(registered, RegisteredAgent)
    assert (registered.name, registered.card_url, registered.status) == (name, url, "active")
    assert registered.card.name == name
    assert registered.skills == (skill,)
    assert registered.tags == (tag,)
    assert [a.name for a in await client.discover(skill=skill)] == [name]
    assert [a.name for a in await client.discover(tag=tag)] == [name]
    assert [a.name for a in await client.discover(skill=skill, tag=tag)] == [name]
    assert await client.discover(skill=skill, tag=unique("other")) == []
    assert (await client.get(name)).card == registered.card
    assert name in [a.name for a in await client.list()]

    await client.remove(name)

    assert await client.discover(skill=skill) == []
    with pytest.raises(AccordError) as missing:
        await client.get(name)
    assert missing.value.reason == "not_found"


async def test_rest_refusals_carry_status_and_reason_and_change_nothing(
    registry: Registry, client: RegistryClient, card_server: CardServer
) -> None:
    name = unique("ledger-agent")
    url = card_server.serve_agent(name, {"transaction-profile": []})
    impostor = card_server.serve_agent(name, {"transaction-profile": []})
    await client.register(url)
    before = await client.list()
    closed_port = free_port()
    cases = [
        ({"card_url": impostor}, 409, "conflict"),
        ({"card_url": f"{card_server.base_url}/bad/text"}, 422, "card_invalid"),
        ({"card_url": f"{card_server.base_url}/bad/missing-fields"}, 422, "card_invalid"),
        ({"card_url": f"http://127.0.0.1:{closed_port}/card.json"}, 502, "agent_unavailable"),
        ({"card_url": "file:///etc/passwd"}, 422, "invalid_input"),
        ({}, 422, "invalid_input"),
    ]
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        for body, status, reason in cases:
            answer = await http.post("/v1/agents", json=body)
            assert (answer.status_code, answer.json()["error"]["reason"]) == (status, reason), body
        malformed = await http.post("/v1/agents", content=b"{", headers={"content-type": "application/json"})
        unknown = await http.get(f"/v1/agents/{unique('nobody')}")
        unknown_delete = await http.delete(f"/v1/agents/{unique('nobody')}")

    assert (malformed.status_code, malformed.json()["error"]["reason"]) == (400, "malformed_json")
    assert (unknown.status_code, unknown.json()["error"]["reason"]) == (404, "not_found")
    assert (unknown_delete.status_code, unknown_delete.json()["error"]["reason"]) == (404, "not_found")
    assert await client.list() == before
    with pytest.raises(AccordError) as conflict:
        await client.register(impostor)
    assert conflict.value.reason == "conflict"


async def test_grpc_registers_gets_lists_discovers_and_removes(
    stub: registry_pb2_grpc.RegistryServiceStub, card_server: CardServer
) -> None:
    skill, tag = unique("sanctions-screening"), unique("screening")
    name = unique("sanctions-agent")
    url = card_server.serve_agent(name, {skill: [tag, "compliance"]})

    agent = await stub.RegisterAgent(registry_pb2.RegisterAgentRequest(card_url=url), timeout=10)

    assert (agent.name, agent.card_url, agent.status) == (name, url, "active")
    assert list(agent.skills) == [skill]
    assert list(agent.tags) == [tag, "compliance"]
    assert json.loads(agent.card_json)["name"] == name
    assert agent.registered_at.seconds > 0
    assert agent.registered_at == agent.updated_at
    assert await stub.GetAgent(registry_pb2.GetAgentRequest(name=name), timeout=10) == agent
    listed = await stub.ListAgents(registry_pb2.ListAgentsRequest(), timeout=10)
    assert name in [a.name for a in listed.agents]
    found = await stub.DiscoverAgents(registry_pb2.DiscoverAgentsRequest(skill=skill, tag=tag), timeout=10)
    assert [a.name for a in found.agents] == [name]
    by_tag = await stub.DiscoverAgents(registry_pb2.DiscoverAgentsRequest(tag=tag), timeout=10)
    assert [a.name for a in by_tag.agents] == [name]

    await stub.RemoveAgent(registry_pb2.RemoveAgentRequest(name=name), timeout=10)

    gone = await stub.DiscoverAgents(registry_pb2.DiscoverAgentsRequest(skill=skill), timeout=10)
    assert list(gone.agents) == []


async def test_grpc_refusals_map_to_the_error_tables_status_and_reason(
    stub: registry_pb2_grpc.RegistryServiceStub, card_server: CardServer
) -> None:
    name = unique("bureau-agent")
    url = card_server.serve_agent(name, {"credit-file": []})
    impostor = card_server.serve_agent(name, {"credit-file": []})
    await stub.RegisterAgent(registry_pb2.RegisterAgentRequest(card_url=url), timeout=10)
    register = registry_pb2.RegisterAgentRequest
    closed_port = free_port()

    assert await grpc_refusal(stub.GetAgent(registry_pb2.GetAgentRequest(name=unique("nobody")))) == (
        grpc.StatusCode.NOT_FOUND,
        "not_found",
    )
    assert await grpc_refusal(stub.RemoveAgent(registry_pb2.RemoveAgentRequest(name=unique("nobody")))) == (
        grpc.StatusCode.NOT_FOUND,
        "not_found",
    )
    assert await grpc_refusal(stub.RegisterAgent(register(card_url=impostor))) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "conflict",
    )
    assert await grpc_refusal(stub.RegisterAgent(register(card_url=f"{card_server.base_url}/bad/text"))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "card_invalid",
    )
    assert await grpc_refusal(stub.RegisterAgent(register(card_url=f"http://127.0.0.1:{closed_port}/c"))) == (
        grpc.StatusCode.UNAVAILABLE,
        "agent_unavailable",
    )
    assert await grpc_refusal(stub.RegisterAgent(register())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_input",
    )
    kept = await stub.GetAgent(registry_pb2.GetAgentRequest(name=name), timeout=10)
    assert kept.card_url == url


async def test_rest_and_grpc_serve_one_catalog(
    client: RegistryClient, stub: registry_pb2_grpc.RegistryServiceStub, card_server: CardServer
) -> None:
    name = unique("ledger-agent")
    url = card_server.serve_agent(name, {"transaction-profile": ["ledger"]})

    await stub.RegisterAgent(registry_pb2.RegisterAgentRequest(card_url=url), timeout=10)
    via_rest = await client.get(name)
    await client.remove(name)

    assert via_rest.card_url == url
    assert await grpc_refusal(stub.GetAgent(registry_pb2.GetAgentRequest(name=name))) == (
        grpc.StatusCode.NOT_FOUND,
        "not_found",
    )


async def test_the_service_reports_health_readiness_and_metrics(registry: Registry) -> None:
    async with httpx.AsyncClient(base_url=registry.base_url, timeout=10) as http:
        health, ready, metrics = await asyncio.gather(
            http.get("/healthz"), http.get("/readyz"), http.get("/metrics")
        )

    assert health.json() == {"status": "ok", "service": "registry"}
    assert ready.json() == {"status": "ready", "service": "registry"}
    assert "accord_http_requests_total" in metrics.text
