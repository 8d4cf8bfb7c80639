"""The support specialists (triage, network, billing, access) over real A2A, against a gateway stand-in.

The stand-in (`tests.tools_stand_in`) is the gateway's real authorization server with `ToolsStandIn` as its
`/mcp`, federating the REAL support and compliance tool servers built in process from the committed data set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from a2a.utils.constants import TransportProtocol

from access_agent.agent import agent as access_agent
from accord.gateway_client import tool_scope
from billing_agent.agent import agent as billing_agent
from network_agent.agent import agent as network_agent
from tests.gateway_stand_in import error_of
from tests.in_process_tools import ticket
from tests.tools_stand_in import Specialists, declared_tools, result_of, send, specialists_running
from triage_agent.agent import agent as triage_agent

JSONRPC, HTTP_JSON, GRPC = TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC


def resolution_input(scenario: str) -> dict[str, Any]:
    row = ticket(scenario)
    return {"ticket_id": row["ticket_id"], "customer_id": row["customer_id"]}


SUPPORT_AGENTS = (triage_agent, network_agent, billing_agent, access_agent)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Specialists]:
    async with specialists_running(tmp_path_factory.mktemp("support-gateway"), SUPPORT_AGENTS) as team:
        yield team


# ----------------------------------------------------------------------------------------------------------
# ticket-triage


@pytest.mark.parametrize("transport", [JSONRPC, HTTP_JSON, GRPC])
async def test_triage_answers_on_every_transport_with_output_matching_its_card(
    desk: Specialists, transport: str
) -> None:
    row = ticket("network_regional_outage")
    result = await result_of(
        desk, "triage-agent", "ticket-triage", {"ticket_id": row["ticket_id"]}, transport=transport
    )
    assert (result["ticket_id"], result["customer_id"]) == (row["ticket_id"], row["customer_id"])
    assert (result["category"], result["priority"]) == ("network", "high")
    assert result["confidence"] >= 0.9


@pytest.mark.parametrize(
    ("scenario", "category"),
    [
        ("network_device_repeat_failure", "network"),
        ("billing_duplicate_charge", "billing"),
        ("access_account_takeover", "access"),
        ("misleading_suspended_for_non_payment", "billing"),
        ("misleading_outage_as_billing", "network"),
        ("misleading_lockout_as_outage", "access"),
    ],
)
async def test_triage_routes_each_category_by_the_records_even_when_the_words_mislead(
    desk: Specialists, scenario: str, category: str
) -> None:
    result = await result_of(
        desk, "triage-agent", "ticket-triage", {"ticket_id": ticket(scenario)["ticket_id"]}
    )
    assert result["category"] == category
    assert result["confidence"] >= 0.5


@pytest.mark.parametrize("scenario", ["ambiguous_refund_for_slow_internet", "ambiguous_bill_and_connection"])
async def test_an_ambiguous_ticket_is_triaged_with_a_low_confidence(desk: Specialists, scenario: str) -> None:
    result = await result_of(
        desk, "triage-agent", "ticket-triage", {"ticket_id": ticket(scenario)["ticket_id"]}
    )
    assert result["confidence"] < 0.5
    assert result["priority"] == "low"


async def test_triage_reads_the_account_through_its_declared_tools_with_its_tasks_token(
    desk: Specialists,
) -> None:
    before = len(desk.calls)
    await result_of(
        desk, "triage-agent", "ticket-triage", {"ticket_id": ticket("access_locked_out")["ticket_id"]}
    )
    calls = desk.calls[before:]
    assert sorted(c.tool for c in calls) == sorted(declared_tools(triage_agent))
    assert {c.client_id for c in calls} == {"triage-agent"}
    assert all(tool_scope(c.tool) in c.scopes for c in calls)


async def test_an_unknown_ticket_fails_with_not_found(desk: Specialists) -> None:
    error = error_of(await send(desk, "triage-agent", "ticket-triage", {"ticket_id": "TKT-0001"}))
    assert error["reason"] == "not_found"


async def test_a_malformed_ticket_id_is_invalid_input_and_reaches_no_tool(desk: Specialists) -> None:
    before = len(desk.calls)
    error = error_of(await send(desk, "triage-agent", "ticket-triage", {"ticket_id": "TKT 1; drop"}))
    assert error["reason"] == "invalid_input"
    assert len(desk.calls) == before


# ----------------------------------------------------------------------------------------------------------
# the resolvers

RESOLUTIONS = [
    (
        "network-agent",
        "network-diagnosis",
        "network_business_outage",
        ["link_incident", "notify_customer", "priority_restoration"],
        True,
    ),
    ("network-agent", "network-diagnosis", "network_device_offline", ["remote_reboot"], False),
    ("network-agent", "network-diagnosis", "misleading_suspended_for_non_payment", ["reroute"], False),
    ("billing-agent", "billing-resolution", "billing_duplicate_charge", ["refund"], False),
    ("billing-agent", "billing-resolution", "billing_duplicate_large", ["refund_for_approval"], True),
    (
        "billing-agent",
        "billing-resolution",
        "misleading_suspended_for_non_payment",
        ["update_payment_method", "send_payment_link", "restore_service_on_payment"],
        False,
    ),
    (
        "access-agent",
        "access-resolution",
        "access_locked_out",
        ["verify_identity", "unlock_account", "send_password_reset"],
        False,
    ),
    (
        "access-agent",
        "access-resolution",
        "access_account_takeover",
        ["revoke_sessions", "force_password_reset", "reenable_mfa", "notify_security"],
        True,
    ),
    ("access-agent", "access-resolution", "access_mfa_lost_phone", ["verify_identity", "reset_mfa"], False),
]


@pytest.mark.parametrize(("name", "skill", "scenario", "actions", "escalate"), RESOLUTIONS)
async def test_each_resolver_prescribes_the_actions_the_records_call_for(
    desk: Specialists, name: str, skill: str, scenario: str, actions: list[str], escalate: bool
) -> None:
    result = await result_of(desk, name, skill, resolution_input(scenario))
    assert result["ticket_id"] == ticket(scenario)["ticket_id"]
    assert [a["type"] for a in result["actions"]] == actions
    assert result["escalate"] is escalate
    assert 0.5 <= result["confidence"] <= 1


@pytest.mark.parametrize(
    ("name", "skill", "scenario"),
    [
        ("network-agent", "network-diagnosis", "network_no_fault_found"),
        ("access-agent", "access-resolution", "access_no_record"),
    ],
)
async def test_a_resolver_that_finds_nothing_says_so_with_a_low_confidence(
    desk: Specialists, name: str, skill: str, scenario: str
) -> None:
    result = await result_of(desk, name, skill, resolution_input(scenario))
    assert result["escalate"] is False
    assert result["confidence"] < 0.6


@pytest.mark.parametrize("transport", [HTTP_JSON, GRPC])
async def test_a_ticket_sent_with_another_customer_is_refused_as_invalid_input(
    desk: Specialists, transport: str
) -> None:
    data = {
        "ticket_id": ticket("access_locked_out")["ticket_id"],
        "customer_id": ticket("billing_duplicate_charge")["customer_id"],
    }
    task = await send(desk, "access-agent", "access-resolution", data, transport=transport)
    assert error_of(task)["reason"] == "invalid_input"
    assert list(task.artifacts) == []


async def test_a_grant_without_a_needed_tool_fails_the_step_with_insufficient_scope(
    desk: Specialists,
) -> None:
    before = len(desk.calls)
    without = ["support.get_ticket", "support.get_customer", "support.list_invoices"]
    task = await send(
        desk,
        "billing-agent",
        "billing-resolution",
        resolution_input("billing_duplicate_charge"),
        grant_tools=without,
    )
    assert error_of(task)["reason"] == "insufficient_scope"
    refused = [c for c in desk.calls[before:] if tool_scope(c.tool) not in c.scopes]
    assert [c.tool for c in refused] == ["support.list_payments"]
