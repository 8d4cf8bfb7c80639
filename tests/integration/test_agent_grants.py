"""A real agent's tool calls under task grants, against `tests.gateway_stand_in` (the real
OAuth server, with the MCP SDK's own bearer middleware in front of the tool double).

A task with a grant reaches its tools with a just-in-time token exchanged from that grant; a task without
one, or with a grant that no longer works, reaches no tool; refusals at `/mcp` come back with their reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, ClientFactory
from a2a.types import SendMessageRequest, Task, TaskState

from accord.agent.testing import RunningAgent
from accord.gateway_client import tool_scope
from accord.payloads import first_data, skill_request, task_result
from ledger_agent.agent import agent as ledger_agent
from sanctions_agent.agent import agent as sanctions_agent
from tests.gateway_stand_in import StandIn, agent_on, gateway_double_running, relayed

WAIT_S = 20.0
LEDGER_TOOLS = ("ledger.get_account", "ledger.aggregate_by_period", "ledger.aggregate_by_counterparty")
PROFILE = {"account_id": "ACC-100007"}


@dataclass(frozen=True)
class World:
    gateway: StandIn
    ledger: RunningAgent
    http: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with (
        gateway_double_running(tmp_path_factory.mktemp("gateway"), protected=True) as gateway,
        agent_on(gateway, ledger_agent) as ledger,
        httpx.AsyncClient(timeout=WAIT_S) as http,
    ):
        yield World(gateway, ledger, http)


async def send(
    world: World,
    agent: RunningAgent,
    skill: str,
    data: dict[str, Any],
    grant: str | None,
    via: StandIn | None = None,
) -> Task:
    """One message to `agent`, signed as the relay of its gateway (`via`, else the module's) signs it."""
    config = ClientConfig(streaming=False, httpx_client=world.http)
    client = await ClientFactory(config).create_from_url(agent.base_url)
    gateway = (via or world.gateway).oauth
    message = relayed(gateway, agent.settings.client_id, skill_request(skill, data, grant=grant))
    request = SendMessageRequest(message=message)
    try:
        async with asyncio.timeout(WAIT_S):
            events = [event async for event in client.send_message(request)]
    finally:
        await client.close()
    return events[-1].task


def failure_reason(task: Task) -> str:
    assert task.status.state == TaskState.TASK_STATE_FAILED
    body = first_data(task.status.message.parts)
    assert body is not None
    reason: str = body["error"]["reason"]
    return reason


async def exchanges_of(world: World, grant_id: str) -> int:
    issued = await world.gateway.oauth.token_issuances()
    return sum(1 for record in issued if record["details"].get("grant_id") == grant_id)


async def test_a_task_with_a_grant_calls_its_tools_with_the_token_exchanged_for_that_grant(
    world: World,
) -> None:
    grant_id, grant = await world.gateway.oauth.grant("ledger-agent", LEDGER_TOOLS, wf="run-1", task="ledger")
    before = len(world.gateway.double.calls)
    task = await send(world, world.ledger, "transaction-profile", PROFILE, grant)
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task_result(task) is not None
    calls = world.gateway.double.calls[before:]
    assert sorted(call.tool for call in calls) == sorted(LEDGER_TOOLS)
    bearers = {call.authorization for call in calls}
    assert len(bearers) == 1, "one token for every call of the task"
    [bearer] = bearers
    assert bearer is not None
    assert bearer.startswith("Bearer ")
    assert grant not in bearer, "the grant itself never goes to /mcp"
    claims = world.gateway.oauth.verified(bearer.removeprefix("Bearer "))
    assert claims.aud == (world.gateway.oauth.mcp_url,)
    assert claims.scopes == {tool_scope(tool) for tool in LEDGER_TOOLS}
    assert (claims.client_id, claims.grant_id) == ("ledger-agent", grant_id)
    assert (claims.wf, claims.task) == ("run-1", "ledger")
    assert claims.act_chain == ("ledger-agent", "orchestrator")
    assert await exchanges_of(world, grant_id) == 1


async def test_a_task_without_a_grant_reaches_no_tool_and_asks_for_no_token(world: World) -> None:
    before_calls = len(world.gateway.double.calls)
    before_tokens = len(await world.gateway.oauth.token_issuances())
    task = await send(world, world.ledger, "transaction-profile", PROFILE, grant=None)
    assert failure_reason(task) == "policy_denied"
    assert len(world.gateway.double.calls) == before_calls
    assert len(await world.gateway.oauth.token_issuances()) == before_tokens


async def test_a_revoked_grant_reaches_no_tool(world: World) -> None:
    grant_id, grant = await world.gateway.oauth.grant("ledger-agent", LEDGER_TOOLS)
    await world.gateway.oauth.deps.grants.revoke(grant_id)
    before = len(world.gateway.double.calls)
    task = await send(world, world.ledger, "transaction-profile", PROFILE, grant)
    assert failure_reason(task) == "invalid_token"
    assert len(world.gateway.double.calls) == before


async def test_another_agents_grant_reaches_no_tool_and_is_not_even_exchanged(world: World) -> None:
    grant_id, grant = await world.gateway.oauth.grant("sanctions-agent", ["sanctions.search"])
    before = len(world.gateway.double.calls)
    task = await send(world, world.ledger, "transaction-profile", PROFILE, grant)
    # It holds none of this skill's tools (and the gateway would refuse it to this client anyway).
    assert failure_reason(task) == "policy_denied"
    assert len(world.gateway.double.calls) == before
    assert await exchanges_of(world, grant_id) == 0


class Forged:
    """Hands out a token the gateway never issued, to see how a refusal at `/mcp` comes back."""

    def for_grant(self, grant: str) -> Forged:
        return self

    async def token(self, tools: object) -> str:
        return "forged.token.value"


async def test_a_token_refused_at_mcp_fails_the_task_as_invalid_token(world: World) -> None:
    from accord.agent.testing import running_agent

    before = len(world.gateway.double.calls)
    async with running_agent(ledger_agent, world.gateway.url, grant_tokens=Forged()) as agent:
        task = await send(world, agent, "transaction-profile", PROFILE, grant="any-grant")
    assert failure_reason(task) == "invalid_token"
    assert len(world.gateway.double.calls) == before


async def test_a_token_without_the_scope_mcp_requires_fails_the_task_as_insufficient_scope(
    tmp_path_factory: pytest.TempPathFactory, world: World
) -> None:
    async with (
        gateway_double_running(
            tmp_path_factory.mktemp("strict"), protected=True, required_scopes=["tool:sanctions.admin"]
        ) as strict,
        agent_on(strict, sanctions_agent) as agent,
    ):
        grant = await strict.grant("sanctions-agent")
        task = await send(world, agent, "sanctions-screening", {"name": "Jane Roe"}, grant, via=strict)
        calls = len(strict.double.calls)
    assert failure_reason(task) == "insufficient_scope"
    assert calls == 0
