"""The orchestrator's discovery cache, against a registry stand-in served over real HTTP: answers are
reused for their time to live, concurrent lookups share one request, empty answers are never kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from fastapi import FastAPI

from accord.agent.testing import serving
from accord.testing.ports import free_port
from orchestrator.discovery import CachingRegistryClient

CARD = {
    "name": "bureau-agent",
    "description": "d",
    "version": "1.0.0",
    "supportedInterfaces": [
        {"url": "http://127.0.0.1:1/a2a/jsonrpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ],
    "capabilities": {},
    "defaultInputModes": ["application/json"],
    "defaultOutputModes": ["application/json"],
    "skills": [{"id": "credit-file", "name": "credit-file", "description": "d", "tags": []}],
}


@dataclass
class RegistryStandIn:
    url: str
    asked: list[str] = field(default_factory=list)
    offered: set[str] = field(default_factory=lambda: {"credit-file"})
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    was_asked: asyncio.Event = field(default_factory=asyncio.Event)


@pytest_asyncio.fixture
async def registry() -> AsyncIterator[RegistryStandIn]:
    port = free_port()
    stand_in = RegistryStandIn(f"http://127.0.0.1:{port}")
    stand_in.gate.set()
    app = FastAPI()

    @app.get("/v1/discover")
    async def discover(skill: str) -> dict[str, Any]:
        stand_in.asked.append(skill)
        stand_in.was_asked.set()
        await stand_in.gate.wait()
        agent = {
            "name": "bureau-agent",
            "card_url": "http://127.0.0.1:1/.well-known/agent-card.json",
            "card": CARD,
            "status": "active",
            "skills": ["credit-file"],
        }
        return {"agents": [agent] if skill in stand_in.offered else []}

    async with serving(app, "127.0.0.1", port):
        yield stand_in


async def test_an_answer_is_reused_within_its_time_to_live_then_asked_again(
    registry: RegistryStandIn,
) -> None:
    client = CachingRegistryClient(registry.url, ttl_s=0.2)
    try:
        first = await client.discover(skill="credit-file")
        second = await client.discover(skill="credit-file")
        assert [a.name for a in first] == [a.name for a in second] == ["bureau-agent"]
        assert registry.asked == ["credit-file"]
        deadline = time.monotonic() + 5
        while len(registry.asked) < 2 and time.monotonic() < deadline:
            await client.discover(skill="credit-file")
            await asyncio.sleep(0.05)
        assert registry.asked == ["credit-file", "credit-file"]
    finally:
        await client.aclose()


async def test_concurrent_lookups_of_one_skill_share_a_single_request(registry: RegistryStandIn) -> None:
    client = CachingRegistryClient(registry.url)
    registry.gate.clear()
    try:
        lookups = [asyncio.create_task(client.discover(skill="credit-file")) for _ in range(20)]
        async with asyncio.timeout(5):
            await registry.was_asked.wait()
        registry.gate.set()
        async with asyncio.timeout(5):
            answers = await asyncio.gather(*lookups)
        assert {len(answer) for answer in answers} == {1}
        assert registry.asked == ["credit-file"]
    finally:
        await client.aclose()


async def test_an_empty_answer_is_not_kept_so_a_new_agent_is_found_at_once(registry: RegistryStandIn) -> None:
    client = CachingRegistryClient(registry.url, ttl_s=60)
    try:
        assert await client.discover(skill="memo-draft") == []
        registry.offered.add("memo-draft")
        assert [a.name for a in await client.discover(skill="memo-draft")] == ["bureau-agent"]
        assert registry.asked == ["memo-draft", "memo-draft"]
    finally:
        await client.aclose()
