"""support-tools and compliance-tools as real `python -m` processes: only the gateway's secret opens `/mcp`.

Uses the process harness of `tests.tool_processes` (free loopback port, readiness polling, SIGTERM).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.in_process_tools import load
from tests.tool_processes import (
    SECRET,
    ToolServer,
    assert_call_unauthenticated,
    call,
    connect,
    tool_calls_counted,
    tool_servers,
)

EXPECTED_TOOLS = {
    "support": {
        "get_ticket",
        "get_customer",
        "network_status",
        "device_diagnostics",
        "list_invoices",
        "list_payments",
        "access_record",
    },
    "compliance": {"get_rules", "get_facts", "list_topics"},
}
PROBE_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "support": ("get_ticket", {"ticket_id": "TKT-0000"}),
    "compliance": ("get_rules", {"rule_set": "data-protection"}),
}
SERVERS = sorted(EXPECTED_TOOLS)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ToolServer]]:
    packages = {name: (f"{name}_tools", {}) for name in SERVERS}
    with tool_servers(tmp_path_factory.mktemp("specialist-tools"), packages) as launched:
        yield launched


@pytest.mark.parametrize("name", SERVERS)
async def test_the_gateway_secret_lets_the_mcp_client_list_tools_with_output_schemas(
    servers: dict[str, ToolServer], name: str
) -> None:
    async with connect(servers[name]) as client:
        tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools} == EXPECTED_TOOLS[name]
    assert all(tool.output_schema is not None for tool in tools)


@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-the-gateway-secret-at-all", f"Bearer {SECRET}x", f"Basic {SECRET}", SECRET],
    ids=["missing", "wrong", "longer", "basic-scheme", "no-scheme"],
)
async def test_without_the_gateway_secret_a_call_gets_401_unauthenticated_and_no_tool_runs(
    servers: dict[str, ToolServer], name: str, authorization: str | None
) -> None:
    await assert_call_unauthenticated(servers[name], *PROBE_CALLS[name], authorization)


@pytest.mark.parametrize("name", SERVERS)
async def test_probes_stay_open_without_a_secret(servers: dict[str, ToolServer], name: str) -> None:
    async with httpx2.AsyncClient(base_url=servers[name].url, timeout=10) as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200, path


async def test_the_support_server_answers_from_the_data_set_and_counts_the_call(
    servers: dict[str, ToolServer],
) -> None:
    row = next(
        t for t in load("support/tickets.json")["tickets"] if t["scenario"] == "billing_duplicate_charge"
    )
    before = tool_calls_counted(servers["support"])
    invoices = await call(servers["support"], "list_invoices", {"customer_id": row["customer_id"]})
    assert [i["status"] for i in invoices["invoices"]].count("overpaid") == 1
    assert tool_calls_counted(servers["support"]) == before + 1


async def test_the_compliance_server_serves_a_topics_facts_without_generator_fields(
    servers: dict[str, ToolServer],
) -> None:
    facts = await call(servers["compliance"], "get_facts", {"topic": "customer-data-retention"})
    assert facts["found"] is True
    assert facts["outline"][0] == "Summary"
    assert "scenario" not in facts
