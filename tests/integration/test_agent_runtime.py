"""How an agent runs: parallel skill executions, cancel, tool tokens, unreachable gateway, registration.

The gateway is played by `tests.gateway_stand_in` (the real OAuth server, an MCP double as `/mcp`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, ClientFactory
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
)
from pydantic import BaseModel, Field

from accord.agent import Agent, TokenProvider, ToolBox
from accord.agent.testing import RunningAgent, running_agent, serving
from accord.payloads import first_data, skill_request, task_result
from accord.registry_client import RegistryClient
from accord.testing.ports import free_port
from bureau_agent.agent import agent as bureau_agent
from ledger_agent.agent import agent as ledger_agent
from registry.app import create_app as create_registry_app
from registry.settings import RegistrySettings
from sanctions_agent.agent import agent as sanctions_agent
from tests.gateway_stand_in import StandIn, agent_on, gateway_double_running, relayed

WAIT_S = 20.0
SCREENING = {"name": "Jane Roe", "birth_date": "1980-01-01", "country": "GB"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[StandIn]:
    async with gateway_double_running(tmp_path_factory.mktemp("gateway")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=WAIT_S) as client:
        yield client


async def send(
    http: httpx.AsyncClient,
    agent: RunningAgent,
    skill: str,
    data: Mapping[str, Any],
    *,
    grant: str | None = None,
    immediately: bool = False,
    via: StandIn | None = None,
) -> Task:
    """One message to `agent`, signed as the relay of `via` (its gateway stand-in) signs it; unsigned
    without one (for an agent built to accept that, in tests of the SDK alone)."""
    config = ClientConfig(streaming=False, httpx_client=http)
    client = await ClientFactory(config).create_from_url(agent.base_url)
    message = skill_request(skill, dict(data), grant=grant)
    request = SendMessageRequest(
        message=relayed(via.oauth if via else None, agent.settings.client_id, message),
        configuration=SendMessageConfiguration(return_immediately=immediately),
    )
    try:
        async with asyncio.timeout(WAIT_S):
            events = [event async for event in client.send_message(request)]
    finally:
        await client.close()
    return events[-1].task


async def timed(pending: Awaitable[Task]) -> tuple[Task, float]:
    started = time.perf_counter()
    task = await pending
    return task, time.perf_counter() - started


async def test_the_fault_delay_holds_each_execution_yet_executions_run_in_parallel(
    gateway: StandIn, http: httpx.AsyncClient
) -> None:
    delay_s = 1.0  # sequential would take 3 s: a margin no load can close
    grants = [await gateway.grant("sanctions-agent", task=f"step-{i}") for i in range(4)]
    async with agent_on(gateway, sanctions_agent, fault_delay_ms=int(delay_s * 1000)) as agent:
        await send(http, agent, "sanctions-screening", SCREENING, grant=grants[0], via=gateway)  # warm up
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                timed(send(http, agent, "sanctions-screening", SCREENING, grant=g, via=gateway))
                for g in grants[1:]
            )
        )
        wall = time.perf_counter() - started
    assert all(task.status.state == TaskState.TASK_STATE_COMPLETED for task, _ in results)
    assert all(elapsed >= delay_s for _, elapsed in results)
    assert wall < 2 * delay_s, f"3 executions took {wall:.2f}s: they ran one after another"


async def test_a_running_task_can_be_cancelled_before_it_calls_any_tool(
    gateway: StandIn, http: httpx.AsyncClient
) -> None:
    double = gateway.double
    before = len(double.calls)
    grant = await gateway.grant("bureau-agent")
    async with agent_on(gateway, bureau_agent, fault_delay_ms=30_000) as agent:
        submitted = await send(
            http,
            agent,
            "credit-file",
            {"applicant_id": "APP-0001"},
            grant=grant,
            immediately=True,
            via=gateway,
        )
        client = await ClientFactory(ClientConfig(httpx_client=http)).create_from_url(agent.base_url)
        try:
            async with asyncio.timeout(WAIT_S):
                cancelled = await client.cancel_task(CancelTaskRequest(id=submitted.id))
                stored = await client.get_task(GetTaskRequest(id=submitted.id))
        finally:
            await client.close()
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    assert stored.status.state == TaskState.TASK_STATE_CANCELED
    assert len(double.calls) == before


class FixedTokens:
    """A `GrantTokens` seam as a deployment could plug in: one token per grant and set of tools."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def for_grant(self, grant: str) -> TokenProvider:
        outer = self

        class Provider:
            async def token(self, tools: Sequence[str]) -> str | None:
                outer.asked.append((grant, tuple(tools)))
                return f"jit-{grant}-" + "+".join(sorted(tools))

        return Provider()


async def test_the_grant_tokens_seam_supplies_the_bearer_of_every_tool_call(
    gateway: StandIn, http: httpx.AsyncClient
) -> None:
    double = gateway.double
    tokens = FixedTokens()
    before = len(double.calls)
    async with running_agent(ledger_agent, gateway.url, grant_tokens=tokens) as agent:
        task = await send(
            http, agent, "transaction-profile", {"account_id": "ACC-100007"}, grant="g1", via=gateway
        )
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    declared = ("ledger.get_account", "ledger.aggregate_by_period", "ledger.aggregate_by_counterparty")
    assert tokens.asked == [("g1", declared)] * 3
    expected = "Bearer jit-g1-" + "+".join(sorted(declared))
    assert [call.authorization for call in double.calls[before:]] == [expected] * 3


async def test_an_unreachable_gateway_fails_the_task_as_upstream_unavailable(http: httpx.AsyncClient) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    # No gateway to take its keys from: this agent is built for the test to accept unsigned messages.
    async with running_agent(sanctions_agent, nowhere, accept_unsigned_messages=True) as agent:
        # The grant's exchange is the first thing that needs the gateway.
        task = await send(http, agent, "sanctions-screening", SCREENING, grant="a-grant")
        ready = await http.get(agent.base_url + "/readyz")
    assert task.status.state == TaskState.TASK_STATE_FAILED
    body = first_data(task.status.message.parts)
    assert body is not None
    assert body["error"]["reason"] == "upstream_unavailable"
    assert ready.status_code == 200, "without a registry an agent is ready once it serves"


async def test_shutdown_closes_the_agents_mcp_client(gateway: StandIn, http: httpx.AsyncClient) -> None:
    grant = await gateway.grant("sanctions-agent")
    async with agent_on(gateway, sanctions_agent) as agent:
        task = await send(http, agent, "sanctions-screening", SCREENING, grant=grant, via=gateway)
        tool_client = agent.app.state.tool_client
        assert tool_client.connected
    assert task_result(task) is not None
    assert not tool_client.connected


async def test_an_agent_registers_itself_once_the_registry_comes_up_and_only_then_is_ready(
    gateway: StandIn, http: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_port = free_port()
    registry_url = f"http://127.0.0.1:{registry_port}"
    # The agent signs its card as the local publisher of this state dir, which the registry trusts.
    monkeypatch.setenv("ACCORD_STATE_DIR", str(tmp_path))
    async with running_agent(sanctions_agent, gateway.url, registry_url=registry_url) as agent:
        assert (await http.get(agent.base_url + "/readyz")).status_code == 503
        registry = create_registry_app(
            RegistrySettings(port=registry_port, state_dir=tmp_path, registry_allow_private_targets=True)
        )
        async with serving(registry, "127.0.0.1", registry_port):
            deadline = time.monotonic() + WAIT_S
            while (await http.get(agent.base_url + "/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "agent never became ready"
                await asyncio.sleep(0.05)
            async with RegistryClient(registry_url) as registry_client:
                found = await registry_client.discover(skill="sanctions-screening")
    assert [(a.name, a.card_url) for a in found] == [("sanctions-agent", agent.settings.card_url)]
    assert agent.app.state.registration.attempts >= 2


class Screening(BaseModel):
    name: str


class Verdict(BaseModel):
    status: str
    confidence: float = Field(ge=0, le=1)


def misbehaving_agent() -> Agent:
    """A sanctions-agent (same card) whose skill misbehaves in the way `name` says."""
    agent = Agent("sanctions-agent")

    @agent.skill("sanctions-screening", tools=["sanctions.search"])
    async def screen(request: Screening, tools: ToolBox) -> Verdict:
        if request.name == "crash":
            raise RuntimeError("db password is hunter2")
        if request.name == "overreach":
            await tools.call("bureau.get_credit_file", {"applicant_id": "APP-0001"})
        return Verdict.model_construct(status="clear", confidence=7.5)  # breaks its own contract

    return agent


@pytest.mark.parametrize(
    ("name", "reason"),
    [("crash", "agent_failed"), ("overreach", "policy_denied"), ("anything", "contract_violation")],
)
async def test_a_misbehaving_skill_fails_its_task_with_a_reason_and_no_leaked_detail(
    gateway: StandIn, http: httpx.AsyncClient, name: str, reason: str
) -> None:
    double = gateway.double
    before = len(double.calls)
    grant = await gateway.grant("sanctions-agent")
    async with agent_on(gateway, misbehaving_agent()) as agent:
        task = await send(http, agent, "sanctions-screening", {"name": name}, grant=grant, via=gateway)
    assert task.status.state == TaskState.TASK_STATE_FAILED
    body = first_data(task.status.message.parts)
    assert body is not None
    assert body["error"]["reason"] == reason
    assert "hunter2" not in str(body)
    assert list(task.artifacts) == []
    assert len(double.calls) == before
