"""The support and compliance tools, called in process on the committed data set.

Through `tests.in_process_tools`: the real tool servers' MCP objects in this process, no network. The A2A
path is tested in `tests/integration/`.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from tests.in_process_tools import InProcessTools, ticket


@pytest.fixture(scope="module")
def tools() -> InProcessTools:
    return InProcessTools()


async def test_a_ticket_is_served_without_the_generators_scenario_and_note(tools: InProcessTools) -> None:
    raw = ticket("billing_duplicate_charge")
    served = await tools.call("support.get_ticket", {"ticket_id": raw["ticket_id"]})
    assert served["found"] is True
    assert (served["customer_id"], served["subject"], served["body"]) == (
        raw["customer_id"],
        raw["subject"],
        raw["body"],
    )
    assert "scenario" not in served
    assert "note" not in served


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("support.get_ticket", {"ticket_id": "TKT-0000"}),
        ("support.get_customer", {"customer_id": "CUS-9999"}),
        ("support.network_status", {"region": "atlantis"}),
        ("support.device_diagnostics", {"customer_id": "CUS-9999"}),
        ("support.list_invoices", {"customer_id": "CUS-9999"}),
        ("support.list_payments", {"customer_id": "CUS-9999"}),
        ("support.access_record", {"customer_id": "CUS-9999"}),
        ("compliance.get_rules", {"rule_set": "no-such-rules"}),
        ("compliance.get_facts", {"topic": "no-such-topic"}),
    ],
)
async def test_an_unknown_id_is_found_false_not_an_error(
    tools: InProcessTools, tool: str, arguments: dict[str, Any]
) -> None:
    assert (await tools.call(tool, arguments))["found"] is False


async def test_a_collected_twice_invoice_is_overpaid_and_a_pending_refund_settles_it(
    tools: InProcessTools,
) -> None:
    duplicate = await tools.call(
        "support.list_invoices", {"customer_id": ticket("billing_duplicate_charge")["customer_id"]}
    )
    overpaid = [i for i in duplicate["invoices"] if i["status"] == "overpaid"]
    assert [i["period"] for i in overpaid] == ["2026-09"]
    assert overpaid[0]["paid"] == 2 * overpaid[0]["amount"]
    pending = await tools.call(
        "support.list_invoices", {"customer_id": ticket("billing_refund_pending")["customer_id"]}
    )
    september = next(i for i in pending["invoices"] if i["period"] == "2026-09")
    assert (september["status"], september["refunded"]) == ("paid", september["amount"])


async def test_an_unpaid_invoice_is_overdue_after_its_due_date_and_the_window_counts_months(
    tools: InProcessTools,
) -> None:
    suspended = ticket("misleading_suspended_for_non_payment")["customer_id"]
    invoices = (await tools.call("support.list_invoices", {"customer_id": suspended}))["invoices"]
    assert [i["period"] for i in invoices] == [
        "2026-05",
        "2026-06",
        "2026-07",
        "2026-08",
        "2026-09",
        "2026-10",
    ]
    assert [i["status"] for i in invoices] == ["paid", "paid", "paid", "overdue", "overdue", "overdue"]
    recent = await tools.call("support.list_invoices", {"customer_id": suspended, "months": 2})
    assert [i["period"] for i in recent["invoices"]] == ["2026-09", "2026-10"]
    payments = await tools.call("support.list_payments", {"customer_id": suspended, "months": 2})
    assert {p["status"] for p in payments["payments"]} == {"failed"}


async def test_network_status_lists_open_incidents_and_recently_resolved_ones(tools: InProcessTools) -> None:
    north = await tools.call("support.network_status", {"region": "north"})
    assert north["status"] == "outage"
    assert [(i["severity"], i["status"]) for i in north["incidents"]] == [("critical", "open")]
    west_month = await tools.call("support.network_status", {"region": "west", "days": 30})
    west_week = await tools.call("support.network_status", {"region": "west", "days": 7})
    assert [i["status"] for i in west_month["incidents"]] == ["resolved"]
    assert west_week["incidents"] == []
    assert west_week["status"] == "operational"


async def test_the_access_record_window_keeps_only_recent_failures(tools: InProcessTools) -> None:
    customer = ticket("access_account_takeover")["customer_id"]
    week = await tools.call("support.access_record", {"customer_id": customer, "days": 7})
    assert len(week["auth_failures"]) == 6
    assert {f["device"] for f in week["auth_failures"]} == {"unknown"}
    assert week["users"][0]["mfa"] == "none"
    day = await tools.call("support.access_record", {"customer_id": customer, "days": 1})
    assert 0 < len(day["auth_failures"]) < 6


async def test_the_rule_book_and_fact_base_are_served_without_generator_fields(tools: InProcessTools) -> None:
    rules = await tools.call("compliance.get_rules", {"rule_set": "data-protection"})
    assert [r["rule_id"] for r in rules["rules"]][:3] == ["DP-01", "DP-02", "DP-03"]
    facts = await tools.call("compliance.get_facts", {"topic": "biometric-login-rollout"})
    assert facts["rule_set"] == "data-protection"
    assert "Legal Basis" in facts["outline"]
    assert "scenario" not in facts
    assert "note" not in facts
    listing = await tools.call("compliance.list_topics", {})
    assert "biometric-login-rollout" in listing["topics"]
    assert listing["rule_sets"] == ["data-protection", "vendor-risk"]


async def test_tool_arguments_out_of_range_are_refused_by_the_tool_schema(tools: InProcessTools) -> None:
    with pytest.raises(ToolError, match="months"):
        await tools.servers["support"].call_tool("list_invoices", {"customer_id": "CUS-0001", "months": 0})
