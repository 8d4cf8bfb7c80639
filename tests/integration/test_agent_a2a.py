"""The three specialists over real A2A (JSON-RPC, HTTP+JSON, gRPC) against a stand-in for the gateway.

The stand-in is the gateway's real authorization server (grants, token exchange) with `GatewayDouble` as its
`/mcp`: a test double for the gateway's TOOL ENDPOINT ONLY, a real MCP server whose tools carry the gateway's
namespaced names (`sanctions.search`, ...) and answer from a small in-test data set. It records every call
it receives, with its bearer, so tests can prove that a rejected request reached no tool and that each call
carried the task's exchanged token. The real gateway and tool servers are exercised by the mesh tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import jsonschema
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, ClientFactory
from a2a.types import Message, SendMessageRequest, Task, TaskState
from a2a.utils.constants import TransportProtocol
from fastapi import APIRouter
from mcp.server.auth.provider import AccessToken as McpAccessToken
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AnyHttpUrl
from rapidfuzz import fuzz

from accord.agent import Agent
from accord.agent.testing import RunningAgent, running_agent
from accord.cards import card_from_dict, skill_schemas
from accord.errors import AccordError
from accord.message_signing import sign
from accord.payloads import first_data, skill_request, task_result
from bureau_agent.agent import agent as bureau_agent
from gateway.oauth import OAuthDeps
from ledger_agent.agent import agent as ledger_agent
from sanctions_agent.agent import agent as sanctions_agent
from tests.unit.test_gateway_client import (
    AGENT_SECRETS,
    AGENT_TOOLS,
    OAuthGateway,
    bound_socket,
    oauth_gateway,
)

JSONRPC, HTTP_JSON, GRPC = TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC
TRANSPORTS = [JSONRPC, HTTP_JSON, GRPC]
WAIT_S = 20.0

SANCTIONS: list[dict[str, Any]] = [
    {
        "entry_id": "SDN-10001",
        "primary_name": "Tariq Hassan Al-Rashid",
        "aliases": ["Tariq Hasan Rashid"],
        "birth_dates": ["1971-04-12"],
        "countries": ["LB", "SY"],
        "programs": ["SDGT"],
    },
    {
        "entry_id": "SDN-10004",
        "primary_name": "Viktor Ivanovich Petrenkov",
        "aliases": ["Viktor Petrenkov"],
        "birth_dates": ["1962-02-17"],
        "countries": ["RU", "UA"],
        "programs": ["UKRAINE-EO13660"],
    },
]
ADDRESS = {"line1": "9 Mill Lane", "city": "Bristol", "postcode": "BS12 2LE", "country": "GB"}
BUREAU: dict[str, dict[str, Any]] = {
    "APP-0001": {
        "score": 749,
        "tradelines": 6,
        "file_age_months": 143,
        "delinquencies_24m": 0,
        "utilization": 0.35,
        "inquiries_6m": 1,
        "address": ADDRESS,
        "address_reported": "2025-04-06",
    },
    "APP-0004": {
        "score": 634,
        "tradelines": 1,
        "file_age_months": 5,
        "delinquencies_24m": 0,
        "utilization": 0.2,
        "inquiries_6m": 3,
        "address": ADDRESS,
        "address_reported": "2026-05-01",
    },
}
# Applicant ids for which the upstream behind the gateway fails.
BROKEN_UPSTREAM = "APP-0500"
INFLOWS = [3000.0, 3100.0, 2950.0, 3300.0, 2900.0, 3050.0, 3000.0, 3150.0, 2800.0, 3200.0, 3100.0, 3000.0]
OUTFLOWS = [2400.0, 2500.0, 2300.0, 2700.0, 2200.0, 2450.0, 2600.0, 2350.0, 2250.0, 2550.0, 2500.0, 2400.0]
LEDGER: dict[str, dict[str, Any]] = {
    "ACC-100007": {
        "account": {"holder_name": "Harry Okafor", "opened": "2014-02-10", "address": ADDRESS},
        "address_updated": "2021-11-21",
        "periods": [
            {"period": f"2026-{m:02d}", "inflow": i, "outflow": o, "count": 30}
            for m, i, o in zip(range(1, 13), INFLOWS, OUTFLOWS, strict=True)
        ],
        "counterparties": [
            {
                "name": "Acme Payroll",
                "category": "salary",
                "inflow": sum(INFLOWS),
                "outflow": 0.0,
                "count": 12,
            },
            {"name": "Willow Homes", "category": "rent", "inflow": 0.0, "outflow": 12000.0, "count": 12},
            {"name": "Lucky Bets", "category": "gambling", "inflow": 150.0, "outflow": 2100.0, "count": 20},
            {"name": "Spin Palace", "category": "gambling", "inflow": 0.0, "outflow": 600.0, "count": 6},
        ],
    }
}


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict[str, Any]
    authorization: str | None


class GatewayDouble:
    """Stands in for the gateway's `/mcp` endpoint only (see the module docstring)."""

    def __init__(self, auth: AuthSettings | None = None, token_verifier: TokenVerifier | None = None) -> None:
        self.calls: list[ToolCall] = []
        # With `auth`, the MCP SDK's own bearer middleware guards `/mcp` (401/403 with WWW-Authenticate).
        self.mcp = MCPServer("gateway-double", auth=auth, token_verifier=token_verifier)
        self._register_tools()

    def record(self, tool: str, ctx: Context, **arguments: Any) -> None:
        headers = ctx.headers or {}
        self.calls.append(ToolCall(tool, arguments, headers.get("authorization")))

    def _register_tools(self) -> None:
        @self.mcp.tool(name="sanctions.search")
        async def search(
            name: str, ctx: Context, birth_date: str | None = None, country: str | None = None, limit: int = 5
        ) -> dict[str, Any]:
            self.record(
                "sanctions.search", ctx, name=name, birth_date=birth_date, country=country, limit=limit
            )
            matches: list[dict[str, Any]] = []
            for entry in SANCTIONS:
                listed = [entry["primary_name"], *entry["aliases"]]
                scored = [(fuzz.token_sort_ratio(name.casefold(), n.casefold()), n) for n in listed]
                score, matched = max(scored)
                if score >= 50:
                    fields = {k: v for k, v in entry.items() if k != "aliases"}
                    matches.append({**fields, "matched_name": matched, "score": round(score, 1)})
            matches.sort(key=lambda m: m["score"], reverse=True)
            return {"query": name, "matches": matches[:limit]}

        @self.mcp.tool(name="bureau.get_credit_file")
        async def get_credit_file(applicant_id: str, ctx: Context) -> dict[str, Any]:
            self.record("bureau.get_credit_file", ctx, applicant_id=applicant_id)
            if applicant_id == BROKEN_UPSTREAM:
                raise ToolError("bureau upstream is down")
            file = BUREAU.get(applicant_id)
            if file is None:
                return {"applicant_id": applicant_id, "found": False}
            return {"applicant_id": applicant_id, "found": True, **file}

        @self.mcp.tool(name="ledger.get_account")
        async def get_account(account_id: str, ctx: Context) -> dict[str, Any]:
            self.record("ledger.get_account", ctx, account_id=account_id)
            data = LEDGER.get(account_id)
            if data is None:
                return {"account_id": account_id, "found": False}
            return {
                "account_id": account_id,
                "found": True,
                **data["account"],
                "address_updated": data["address_updated"],
            }

        @self.mcp.tool(name="ledger.aggregate_by_period")
        async def aggregate_by_period(account_id: str, ctx: Context, months: int = 12) -> dict[str, Any]:
            self.record("ledger.aggregate_by_period", ctx, account_id=account_id, months=months)
            periods = LEDGER.get(account_id, {}).get("periods", [])
            return {"account_id": account_id, "periods": periods[-months:]}

        @self.mcp.tool(name="ledger.aggregate_by_counterparty")
        async def aggregate_by_counterparty(
            account_id: str, ctx: Context, months: int = 12, top: int = 10
        ) -> dict[str, Any]:
            self.record(
                "ledger.aggregate_by_counterparty", ctx, account_id=account_id, months=months, top=top
            )
            rows = LEDGER.get(account_id, {}).get("counterparties", [])
            return {"account_id": account_id, "counterparties": rows[:top]}


def relayed(gateway: OAuthGateway | None, agent: str, message: Message) -> Message:
    """`message` as the gateway's relay delivers it to `agent`: signed with the gateway's key, for `agent`
    (agents accept nothing else). Without a gateway the message goes as it is."""
    if gateway is None:
        return message
    return sign(message, gateway.deps.ring, issuer=gateway.url, caller="orchestrator", callee=agent)


@dataclass(frozen=True)
class StandIn:
    """The gateway stand-in: its real OAuth server (which also signs messages as the relay would, with its
    keys at its JWKS endpoint) and the tool double behind its `/mcp`, at one URL."""

    double: GatewayDouble
    oauth: OAuthGateway

    @property
    def url(self) -> str:
        return self.oauth.url

    async def grant(self, agent: str, tools: Sequence[str] | None = None, task: str = "step-1") -> str:
        """A grant for `agent`'s declared tools (or `tools`), as the orchestrator would send it."""
        _grant_id, grant = await self.oauth.grant(
            agent, AGENT_TOOLS[agent] if tools is None else tools, task=task
        )
        return grant


class GatewayTokens:
    """An MCP `TokenVerifier` that checks bearers exactly as the stand-in's authorization server would."""

    def __init__(self) -> None:
        self.gateway: OAuthGateway | None = None

    async def verify_token(self, token: str) -> McpAccessToken | None:
        assert self.gateway is not None, "the stand-in has not started"
        try:
            claims = self.gateway.verified(token)
        except AccordError:
            return None
        return McpAccessToken(
            token=token,
            client_id=claims.client_id,
            scopes=sorted(claims.scopes),
            expires_at=claims.exp,
            resource=claims.aud[0],
        )


@contextlib.asynccontextmanager
async def gateway_double_running(
    state_dir: Path,
    protected: bool = False,
    required_scopes: Sequence[str] = (),
    routers: Callable[[OAuthDeps], Sequence[APIRouter]] = lambda _deps: (),
) -> AsyncIterator[StandIn]:
    """The stand-in; `protected` puts bearer verification (and `required_scopes`) in front of `/mcp`;
    `routers` adds more of the gateway (e.g. its grant API)."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    verifier = GatewayTokens()
    auth = AuthSettings(
        issuer_url=AnyHttpUrl(url),
        resource_server_url=AnyHttpUrl(url + "/mcp"),
        required_scopes=list(required_scopes),
        validate_token_resource=True,
    )
    double = GatewayDouble(auth, verifier) if protected else GatewayDouble()
    mcp_app = double.mcp.streamable_http_app(stateless_http=True)
    session_manager = double.mcp.session_manager
    async with oauth_gateway(
        state_dir, routers=routers, mcp_app=mcp_app, mcp_lifespan=session_manager.run, sock=sock
    ) as oauth:
        verifier.gateway = oauth
        yield StandIn(double, oauth)


def agent_on(
    stand_in: StandIn, agent: Agent, **settings: Any
) -> contextlib.AbstractAsyncContextManager[RunningAgent]:
    """The agent against the stand-in, with its real client secret so it can exchange its grants."""
    return running_agent(agent, stand_in.url, client_secret=AGENT_SECRETS[agent.name], **settings)


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
    config = ClientConfig(
        streaming=False,
        supported_protocol_bindings=[transport],
        grpc_channel_factory=grpc.aio.insecure_channel,
        httpx_client=team.http,
    )
    client = await ClientFactory(config).create_from_url(team.agents[name].base_url)
    grant = await team.gateway.grant(name) if granted else None
    unsigned = message or skill_request(skill, data or {}, grant=grant)
    request = SendMessageRequest(message=relayed(team.gateway.oauth, name, unsigned))
    try:
        async with asyncio.timeout(WAIT_S):
            events = [event async for event in client.send_message(request)]
    finally:
        await client.close()
    assert [e.WhichOneof("payload") for e in events] == ["task"]
    return events[0].task


def error_of(task: Task) -> dict[str, Any]:
    assert task.status.state == TaskState.TASK_STATE_FAILED
    body = first_data(task.status.message.parts)
    assert body is not None
    error = body["error"]
    assert isinstance(error, dict)
    return error


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
