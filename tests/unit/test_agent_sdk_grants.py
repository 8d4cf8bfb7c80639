"""The SDK's grant exchange (`GrantExchange` / `ExchangedToken`) against the gateway's real OAuth server:
one exchange per task however many tool calls, scopes = the skill's tools held by the grant, refusals by
reason, renewal shortly before expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from accord.agent import GrantExchange
from accord.errors import AccordError
from accord.gateway_client import GatewayClient, tool_scope
from tests.oauth_gateway import AGENT_TOOLS, OAuthGateway, agent_client, oauth_gateway

LEDGER_TOOLS = AGENT_TOOLS["ledger-agent"]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[OAuthGateway]:
    async with oauth_gateway(tmp_path) as running:
        yield running


@pytest.fixture
async def ledger(gateway: OAuthGateway) -> AsyncIterator[GatewayClient]:
    async with agent_client(gateway, "ledger-agent") as client:
        yield client


async def exchanges(gateway: OAuthGateway) -> int:
    return sum(1 for r in await gateway.token_issuances() if r["details"].get("grant_id"))


async def test_concurrent_tool_calls_of_one_task_share_one_exchanged_token(
    gateway: OAuthGateway, ledger: GatewayClient
) -> None:
    grant_id, grant = await gateway.grant("ledger-agent", LEDGER_TOOLS, wf="wf-7", task="ledger")
    tokens = GrantExchange(ledger, gateway.mcp_url).for_grant(grant)
    bearers = await asyncio.gather(*(tokens.token(LEDGER_TOOLS) for _ in range(10)))
    assert len(set(bearers)) == 1
    assert tokens.exchanges == 1
    assert await exchanges(gateway) == 1
    claims = gateway.verified(bearers[0])
    assert claims.scopes == {tool_scope(tool) for tool in LEDGER_TOOLS}
    assert (claims.client_id, claims.grant_id, claims.wf, claims.task) == (
        "ledger-agent",
        grant_id,
        "wf-7",
        "ledger",
    )
    assert claims.aud == (gateway.mcp_url,)


async def test_each_task_exchanges_its_own_grant(gateway: OAuthGateway, ledger: GatewayClient) -> None:
    source = GrantExchange(ledger, gateway.mcp_url)
    _, first = await gateway.grant("ledger-agent", LEDGER_TOOLS, task="a")
    _, second = await gateway.grant("ledger-agent", LEDGER_TOOLS, task="b")
    one = gateway.verified(await source.for_grant(first).token(LEDGER_TOOLS))
    two = gateway.verified(await source.for_grant(second).token(LEDGER_TOOLS))
    assert (one.task, two.task) == ("a", "b")


async def test_only_the_skill_tools_the_grant_holds_are_asked_for(
    gateway: OAuthGateway, ledger: GatewayClient
) -> None:
    # The policy dropped two of the skill's tools: the token covers the one left, nothing else.
    _, grant = await gateway.grant("ledger-agent", ["ledger.get_account"])
    token = await GrantExchange(ledger, gateway.mcp_url).for_grant(grant).token(LEDGER_TOOLS)
    assert gateway.verified(token).scopes == {tool_scope("ledger.get_account")}


async def test_a_grant_for_none_of_the_skills_tools_is_refused_without_an_exchange(
    gateway: OAuthGateway, ledger: GatewayClient
) -> None:
    _, grant = await gateway.grant("ledger-agent", ["ledger.get_account"])
    tokens = GrantExchange(ledger, gateway.mcp_url).for_grant(grant)
    with pytest.raises(AccordError) as refused:
        await tokens.token(["ledger.aggregate_by_period"])
    assert refused.value.reason == "policy_denied"
    assert ledger.token_requests == 0


async def test_a_revoked_grant_yields_no_token(gateway: OAuthGateway, ledger: GatewayClient) -> None:
    grant_id, grant = await gateway.grant("ledger-agent", LEDGER_TOOLS)
    await gateway.deps.grants.revoke(grant_id)
    with pytest.raises(AccordError) as refused:
        await GrantExchange(ledger, gateway.mcp_url).for_grant(grant).token(LEDGER_TOOLS)
    assert refused.value.reason == "invalid_token"
    assert await exchanges(gateway) == 0


async def test_a_garbled_grant_is_sent_as_is_and_refused_by_the_gateway(ledger: GatewayClient) -> None:
    tokens = GrantExchange(ledger, ledger.base_url + "/mcp").for_grant("not-a-grant")
    with pytest.raises(AccordError) as refused:
        await tokens.token(LEDGER_TOOLS)
    assert refused.value.reason == "invalid_token"


async def test_the_token_is_exchanged_again_shortly_before_it_expires(gateway: OAuthGateway) -> None:
    now = [time.time()]
    _, grant = await gateway.grant("ledger-agent", LEDGER_TOOLS, deadline_s=120)
    async with agent_client(gateway, "ledger-agent", refresh_margin_s=10, clock=lambda: now[0]) as client:
        tokens = GrantExchange(client, gateway.mcp_url).for_grant(grant)
        first = await tokens.token(LEDGER_TOOLS)
        expires = gateway.verified(first).exp
        now[0] = expires - 11
        assert await tokens.token(LEDGER_TOOLS) == first
        now[0] = expires - 9
        renewed = await tokens.token(LEDGER_TOOLS)
    assert renewed != first
    assert tokens.exchanges == 2
    assert "ey" not in repr(tokens)
