"""The three specialists over real A2A (JSON-RPC, HTTP+JSON, gRPC) against a stand-in for the gateway.

The stand-in (`tests.gateway_stand_in`) is the gateway's real authorization server with `GatewayDouble` as
its `/mcp`, a test double for the gateway's tool endpoint only that records every call with its bearer.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, ClientFactory
from a2a.types import Message, SendMessageRequest, Task, TaskState
from a2a.utils.constants import TransportProtocol

from accord.agent.testing import RunningAgent
from accord.cards import card_from_dict, skill_schemas
from accord.payloads import skill_request, task_result
from bureau_agent.agent import agent as bureau_agent
from ledger_agent.agent import agent as ledger_agent
from sanctions_agent.agent import agent as sanctions_agent
from tests.gateway_stand_in import (
    ADDRESS,
    BROKEN_UPSTREAM,
    INFLOWS,
    OUTFLOWS,
    GatewayDouble,
    StandIn,
    agent_on,
    error_of,
    gateway_double_running,
    relayed,
    send_unary,
)

JSONRPC, HTTP_JSON, GRPC = TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC
TRANSPORTS = [JSONRPC, HTTP_JSON, GRPC]
WAIT_S = 20.0


@dataclass(frozen=True)
class Specialists:
    gateway: StandIn
    agents: dict[str, RunningAgent]
    # One HTTP client for every A2A client: building an httpx client (TLS context) costs ~0.1 s.
    http: httpx.AsyncClient

    @property
    def double(self) -> GatewayDouble:
        return self.gateway.double


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def specialists(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Specialists]:
    async with (
        gateway_double_running(tmp_path_factory.mktemp("gateway"), protected=True) as stand_in,
        agent_on(stand_in, sanctions_agent) as sanctions,
        agent_on(stand_in, bureau_agent) as bureau,
        agent_on(stand_in, ledger_agent) as ledger,
        httpx.AsyncClient(timeout=WAIT_S) as http,
    ):
        yield Specialists(stand_in, {a.app.title: a for a in (sanctions, bureau, ledger)}, http)


async def send(
    team: Specialists,
    name: str,
    transport: str,
    skill: str,
    data: dict[str, Any] | None = None,
    *,
    message: Message | None = None,
    granted: bool = True,
) -> Task:
    """One unary SendMessage through the real a2a-sdk client on the chosen transport, with a task grant
    for the agent's declared tools unless `granted` is False."""
    grant = await team.gateway.grant(name) if granted else None
    unsigned = message or skill_request(skill, data or {}, grant=grant)
    signed = relayed(team.gateway.oauth, name, unsigned)
    return await send_unary(team.http, team.agents[name].base_url, transport, signed)


async def served_output_schema(team: Specialists, name: str, skill: str) -> dict[str, Any]:
    response = await team.http.get(team.agents[name].base_url + "/.well-known/agent-card.json")
    return skill_schemas(card_from_dict(response.json()))[skill].output_schema


def check_sanctions(result: dict[str, Any]) -> None:
    assert result["status"] == "hit"
    assert result["best_score"] == 100.0
    assert result["matches"][0]["entry_id"] == "SDN-10001"
    assert result["confidence"] == 1.0


def check_bureau(result: dict[str, Any]) -> None:
    assert result["found"] is True
    assert result["score"] == 749
    assert result["thin_file"] is False
    assert result["address"] == ADDRESS
    assert result["address_reported"] == "2025-04-06"


def check_ledger(result: dict[str, Any]) -> None:
    assert result["found"] is True
    assert result["months_observed"] == 12
    assert result["avg_monthly_inflow"] == round(statistics.fmean(INFLOWS), 2)
    assert result["avg_monthly_outflow"] == round(statistics.fmean(OUTFLOWS), 2)
    assert result["net_monthly"] == round(statistics.fmean(INFLOWS) - statistics.fmean(OUTFLOWS), 2)
    assert result["income_volatility"] == round(statistics.pstdev(INFLOWS) / statistics.fmean(INFLOWS), 4)
    assert result["gambling_share"] == round(2700.0 / sum(OUTFLOWS), 4)
    assert result["address_updated"] == "2021-11-21"


CASES = {
    "sanctions-agent": (
        "sanctions-screening",
        {"name": "Tariq Hassan Al-Rashid", "birth_date": "1971-04-12", "country": "LB"},
        check_sanctions,
    ),
    "bureau-agent": ("credit-file", {"applicant_id": "APP-0001"}, check_bureau),
    "ledger-agent": ("transaction-profile", {"account_id": "ACC-100007"}, check_ledger),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", sorted(CASES))
async def test_each_specialist_completes_its_skill_with_a_result_matching_its_card(
    specialists: Specialists, name: str, transport: str
) -> None:
    skill, data, check = CASES[name]
    task = await send(specialists, name, transport, skill, data)
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.name for a in task.artifacts] == ["result"]
    result = task_result(task)
    assert result is not None
    jsonschema.validate(result, await served_output_schema(specialists, name, skill))
    check(result)


async def test_the_specialists_call_exactly_their_declared_tools(specialists: Specialists) -> None:
    before = len(specialists.double.calls)
    for name, (skill, data, _check) in CASES.items():
        await send(specialists, name, JSONRPC, skill, data)
    tools = sorted(call.tool for call in specialists.double.calls[before:])
    assert tools == sorted(
        [
            "sanctions.search",
            "bureau.get_credit_file",
            "ledger.get_account",
            "ledger.aggregate_by_period",
            "ledger.aggregate_by_counterparty",
        ]
    )
    # Every call carried a bearer: the JIT token its task's grant was exchanged for.
    assert all(
        (call.authorization or "").startswith("Bearer ey") for call in specialists.double.calls[before:]
    )


async def test_a_close_name_with_another_birth_date_and_country_is_never_a_hit(
    specialists: Specialists,
) -> None:
    data = {"name": "Viktor Petrenkov", "birth_date": "1986-07-30", "country": "GB"}
    result = task_result(await send(specialists, "sanctions-agent", JSONRPC, "sanctions-screening", data))
    assert result is not None
    assert result["status"] == "potential_match"
    assert result["best_score"] >= 92


async def test_an_unremarkable_name_screens_clear(specialists: Specialists) -> None:
    data = {"name": "Amelia O'Brien", "birth_date": "1959-04-26", "country": "GB"}
    result = task_result(await send(specialists, "sanctions-agent", HTTP_JSON, "sanctions-screening", data))
    assert result is not None
    assert (result["status"], result["matches"]) == ("clear", [])


async def test_a_thin_file_and_a_missing_file_are_reported_as_such(specialists: Specialists) -> None:
    thin = task_result(
        await send(specialists, "bureau-agent", GRPC, "credit-file", {"applicant_id": "APP-0004"})
    )
    none = task_result(
        await send(specialists, "bureau-agent", GRPC, "credit-file", {"applicant_id": "APP-0999"})
    )
    assert thin is not None
    assert none is not None
    assert (thin["found"], thin["thin_file"], thin["score"]) == (True, True, 634)
    assert (none["found"], none["score"], none["address"]) == (False, None, None)


async def test_an_unknown_account_gives_a_not_found_profile_without_aggregating(
    specialists: Specialists,
) -> None:
    before = len(specialists.double.calls)
    data = {"account_id": "ACC-0"}
    result = task_result(await send(specialists, "ledger-agent", JSONRPC, "transaction-profile", data))
    assert result is not None
    assert (result["found"], result["months_observed"]) == (False, 0)
    assert [c.tool for c in specialists.double.calls[before:]] == ["ledger.get_account"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "bad_input",
    [{"nme": "Jane Roe"}, {"name": ""}, {"name": "Jane Roe", "birth_date": "12/04/1971"}, {"name": 42}],
)
async def test_invalid_input_fails_with_invalid_input_and_reaches_no_tool(
    specialists: Specialists, transport: str, bad_input: dict[str, Any]
) -> None:
    before = len(specialists.double.calls)
    task = await send(specialists, "sanctions-agent", transport, "sanctions-screening", bad_input)
    error = error_of(task)
    assert error["reason"] == "invalid_input"
    assert "Jane Roe" not in error["message"]
    assert list(task.artifacts) == []
    assert len(specialists.double.calls) == before


async def test_a_message_without_a_json_data_part_is_invalid_input(specialists: Specialists) -> None:
    message = skill_request("sanctions-screening", {"name": "x"})
    del message.parts[:]
    message.parts.add(text="screen Jane Roe please")
    before = len(specialists.double.calls)
    task = await send(specialists, "sanctions-agent", JSONRPC, "", message=message)
    assert error_of(task)["reason"] == "invalid_input"
    assert len(specialists.double.calls) == before


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unknown_skill_fails_with_unknown_skill(specialists: Specialists, transport: str) -> None:
    before = len(specialists.double.calls)
    task = await send(specialists, "bureau-agent", transport, "sanctions-screening", {"name": "Jane Roe"})
    assert error_of(task)["reason"] == "unknown_skill"
    assert len(specialists.double.calls) == before


async def test_a_failing_upstream_fails_the_task_without_leaking_its_error(specialists: Specialists) -> None:
    data = {"applicant_id": BROKEN_UPSTREAM}
    error = error_of(await send(specialists, "bureau-agent", HTTP_JSON, "credit-file", data))
    assert error["reason"] == "upstream_unavailable"
    assert "down" not in error["message"]


async def test_both_well_known_paths_serve_the_same_card_with_three_interfaces(
    specialists: Specialists,
) -> None:
    agent = specialists.agents["ledger-agent"]
    current = await specialists.http.get(agent.base_url + "/.well-known/agent-card.json")
    legacy = await specialists.http.get(agent.base_url + "/.well-known/agent.json")
    assert current.status_code == legacy.status_code == 200
    assert current.json() == legacy.json()
    card = current.json()
    assert card["name"] == "ledger-agent"
    bindings = {i["protocolBinding"]: i["url"] for i in card["supportedInterfaces"]}
    assert bindings == {
        "JSONRPC": agent.base_url + "/a2a/jsonrpc",
        "HTTP+JSON": agent.base_url + "/a2a/rest",
        "GRPC": agent.grpc_address,
    }
    assert "transaction-profile" in skill_schemas(card_from_dict(card))


async def test_streaming_reports_working_then_the_result_artifact_then_completed(
    specialists: Specialists,
) -> None:
    config = ClientConfig(streaming=True, httpx_client=specialists.http)
    client = await ClientFactory(config).create_from_url(specialists.agents["sanctions-agent"].base_url)
    grant = await specialists.gateway.grant("sanctions-agent")
    message = skill_request("sanctions-screening", {"name": "Jane Roe"}, grant=grant)
    request = SendMessageRequest(message=relayed(specialists.gateway.oauth, "sanctions-agent", message))
    try:
        async with asyncio.timeout(WAIT_S):
            events = [event async for event in client.send_message(request)]
    finally:
        await client.close()
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds == ["task", "status_update", "artifact_update", "status_update"]
    assert events[1].status_update.status.state == TaskState.TASK_STATE_WORKING
    assert events[2].artifact_update.artifact.name == "result"
    assert events[3].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_an_agent_reuses_one_mcp_client_for_all_its_tool_calls(specialists: Specialists) -> None:
    data = {"account_id": "ACC-100007"}
    await asyncio.gather(
        *(send(specialists, "ledger-agent", JSONRPC, "transaction-profile", data) for _ in range(5))
    )
    assert specialists.agents["ledger-agent"].app.state.tool_client.connections_opened == 1
