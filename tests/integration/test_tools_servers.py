"""The three upstream MCP tool servers, each a real `python -m <package>` process on a free loopback port.

Called with the real `mcp.Client` over streamable HTTP: the gateway secret opens `/mcp`, anything else gets
401 `unauthenticated` before any tool runs. The tools are then exercised on the data set's hard cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from accord.testing.ports import free_port
from tests.tool_processes import (
    DATA,
    MCP_HEADERS,
    SECRET,
    ToolServer,
    assert_call_unauthenticated,
    call,
    call_error,
    connect,
    tool_calls_counted,
    tool_servers,
)

FAULT_LATENCY_MS = 400
EXPECTED_TOOLS = {
    "sanctions": {"search"},
    "bureau": {"get_credit_file"},
    "ledger": {"get_account", "aggregate_by_period", "aggregate_by_counterparty"},
}
# One harmless call per server, used to show whether a tool ran.
PROBE_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "sanctions": ("search", {"name": "Probe Person"}),
    "bureau": ("get_credit_file", {"applicant_id": "APP-0000"}),
    "ledger": ("get_account", {"account_id": "ACC-000000"}),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ToolServer]]:
    packages: dict[str, tuple[str, dict[str, str]]] = {
        name: (f"{name}_tools", {}) for name in ("sanctions", "bureau", "ledger")
    }
    # A second sanctions server with the test-only switches on.
    packages["instrumented"] = (
        "sanctions_tools",
        {"ACCORD_TOOLS_RECORD_HEADERS": "1", "ACCORD_FAULT_LATENCY_MS": str(FAULT_LATENCY_MS)},
    )
    with tool_servers(tmp_path_factory.mktemp("tools"), packages) as launched:
        yield launched


def applicant(scenario: str) -> dict[str, Any]:
    applicants: list[dict[str, Any]] = json.loads((DATA / "applicants.json").read_text())
    return next(a for a in applicants if a["scenario"] == scenario)


def sanctions_entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((DATA / "sanctions.json").read_text())["entries"]
    return entries


def raw_transactions(account_id: str) -> list[dict[str, Any]]:
    accounts = json.loads((DATA / "ledger.json").read_text())["accounts"]
    rows: list[dict[str, Any]] = next(a for a in accounts if a["account_id"] == account_id)["transactions"]
    return rows


async def best_match(servers: dict[str, ToolServer], person: dict[str, Any]) -> dict[str, Any]:
    arguments = {"name": person["name"], "birth_date": person["birth_date"], "country": person["country"]}
    matches = (await call(servers["sanctions"], "search", arguments))["matches"]
    return matches[0] if matches else {"score": 0.0}


# ----------------------------------------------------------------------------------------------------------
# The gate: only the gateway's secret opens /mcp.

SERVERS = ["sanctions", "bureau", "ledger"]


@pytest.mark.parametrize("name", SERVERS)
async def test_the_gateway_secret_lets_the_mcp_client_list_tools_with_output_schemas(
    servers: dict[str, ToolServer], name: str
) -> None:
    async with connect(servers[name]) as client:
        tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools} == EXPECTED_TOOLS[name]
    key = "matches" if name == "sanctions" else "found"
    assert all(tool.output_schema is not None and key in tool.output_schema["properties"] for tool in tools)


@pytest.mark.parametrize("name", SERVERS)
async def test_the_gateway_secret_lets_a_tool_run_and_the_call_is_counted(
    servers: dict[str, ToolServer], name: str
) -> None:
    before = tool_calls_counted(servers[name])
    tool, arguments = PROBE_CALLS[name]
    await call(servers[name], tool, arguments)
    assert tool_calls_counted(servers[name]) == before + 1


@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-the-gateway-secret-at-all", f"Bearer {SECRET}x", f"Basic {SECRET}", SECRET, "Bearer"],
    ids=["missing", "wrong", "longer", "basic-scheme", "no-scheme", "empty"],
)
async def test_any_other_authorization_gets_401_unauthenticated_and_no_tool_runs(
    servers: dict[str, ToolServer], name: str, authorization: str | None
) -> None:
    await assert_call_unauthenticated(servers[name], *PROBE_CALLS[name], authorization)


@pytest.mark.parametrize("name", SERVERS)
async def test_the_mcp_client_with_a_wrong_secret_cannot_connect(
    servers: dict[str, ToolServer], name: str
) -> None:
    before = tool_calls_counted(servers[name])
    tool, arguments = PROBE_CALLS[name]
    # The SDK reports HTTP 401 as MCPError(-32603), wrapped in task-group exception groups.
    with pytest.raises(BaseExceptionGroup) as caught:
        async with connect(servers[name], secret="wrong-secret-but-long-enough") as client:
            await client.call_tool(tool, arguments)
    assert "Server returned an error response" in repr(caught.value)
    assert tool_calls_counted(servers[name]) == before


@pytest.mark.parametrize("name", SERVERS)
async def test_health_readiness_and_metrics_stay_open_without_a_secret(
    servers: dict[str, ToolServer], name: str
) -> None:
    async with httpx2.AsyncClient(base_url=servers[name].url, timeout=10) as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/docs")).status_code == 401


async def test_a_foreign_host_header_is_refused_even_with_the_secret(servers: dict[str, ToolServer]) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {**MCP_HEADERS, "authorization": f"Bearer {SECRET}", "host": "attacker.example"}
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(servers["ledger"].url + "/mcp", json=body, headers=headers)
    assert response.status_code == 421


async def test_received_headers_are_not_exposed_unless_recording_is_switched_on(
    servers: dict[str, ToolServer],
) -> None:
    response = httpx2.get(
        servers["sanctions"].url + "/debug/received-headers", headers={"authorization": f"Bearer {SECRET}"}
    )
    assert response.status_code == 404


async def test_a_recording_server_lists_every_header_its_mcp_requests_carried(
    servers: dict[str, ToolServer],
) -> None:
    server = servers["instrumented"]
    debug = server.url + "/debug/received-headers"
    auth = {"authorization": f"Bearer {SECRET}"}
    assert httpx2.delete(debug, headers=auth).status_code == 200
    async with connect(server, **{"X-Accord-Probe": "probe-value-1"}) as client:
        await client.call_tool("search", {"name": "Anyone"})
    async with httpx2.AsyncClient(timeout=10) as http:
        await http.post(
            server.url + "/mcp", json={}, headers={**MCP_HEADERS, "x-accord-probe": "unauthenticated"}
        )
    assert httpx2.get(debug).status_code == 401  # the record holds the secret, so it is behind it too
    recorded = httpx2.get(debug, headers=auth).json()["requests"]
    seen = [dict(map(tuple, r["headers"])) for r in recorded]
    assert all(r["path"] == "/mcp" for r in recorded)
    assert any(
        h.get("x-accord-probe") == "probe-value-1" and h.get("authorization") == f"Bearer {SECRET}"
        for h in seen
    )
    assert any(h.get("x-accord-probe") == "unauthenticated" and "authorization" not in h for h in seen)


async def test_injected_fault_latency_delays_every_tool_call(servers: dict[str, ToolServer]) -> None:
    async with connect(servers["instrumented"]) as client:
        await client.list_tools()  # protocol discovery happens outside the timed call
        started = time.perf_counter()
        await client.call_tool("search", {"name": "Anyone"})
        slow = time.perf_counter() - started
    async with connect(servers["sanctions"]) as client:
        await client.list_tools()
        started = time.perf_counter()
        await client.call_tool("search", {"name": "Anyone"})
        fast = time.perf_counter() - started
    assert slow >= FAULT_LATENCY_MS / 1000
    assert fast < FAULT_LATENCY_MS / 1000


# ----------------------------------------------------------------------------------------------------------
# sanctions.search


async def test_the_exact_hit_applicant_matches_its_listing_at_full_score(
    servers: dict[str, ToolServer],
) -> None:
    person = applicant("sanctions_exact_hit")
    match = await best_match(servers, person)
    assert match["primary_name"] == person["name"]
    assert match["matched_name"] == person["name"]
    assert match["score"] == 100.0
    assert person["birth_date"] in match["birth_dates"]
    assert person["country"] in match["countries"]


async def test_a_transliterated_alias_is_a_hit_and_scores_far_above_the_near_miss(
    servers: dict[str, ToolServer],
) -> None:
    alias_hit = await best_match(servers, applicant("sanctions_alias_hit"))
    near_miss = await best_match(servers, applicant("sanctions_near_miss"))
    assert alias_hit["score"] >= 95
    assert alias_hit["matched_name"] != applicant("sanctions_alias_hit")["name"]
    assert near_miss["score"] < 75
    assert alias_hit["score"] - near_miss["score"] >= 20


async def test_the_near_miss_name_alone_is_close_but_its_birth_date_and_country_pull_it_down(
    servers: dict[str, ToolServer],
) -> None:
    person = applicant("sanctions_near_miss")
    name_only = (await call(servers["sanctions"], "search", {"name": person["name"]}))["matches"][0]
    with_facts = await best_match(servers, person)
    assert name_only["entry_id"] == with_facts["entry_id"]
    assert name_only["score"] >= 90
    assert with_facts["score"] <= name_only["score"] - 25


@pytest.mark.parametrize(
    "spelling", ["Muammar Qaddafi", "Moammar Gadhafi", "Muamar Kaddafi", "Mu'ammar al-Qadhdhafi", "Kaddafi"]
)
async def test_romanizations_of_one_listed_name_all_find_the_same_entry_first(
    servers: dict[str, ToolServer], spelling: str
) -> None:
    listed = next(e for e in sanctions_entries() if "Qaddafi" in e["primary_name"])
    top = (await call(servers["sanctions"], "search", {"name": spelling}))["matches"][0]
    assert top["entry_id"] == listed["entry_id"]
    assert top["score"] >= 90


async def test_diacritics_and_case_do_not_change_the_score(servers: dict[str, ToolServer]) -> None:
    import unicodedata

    entry = next(
        e for e in sanctions_entries() if not e["primary_name"].isascii() and e["entry_type"] == "individual"
    )
    plain = unicodedata.normalize("NFKD", entry["primary_name"]).encode("ascii", "ignore").decode().upper()
    matches = (await call(servers["sanctions"], "search", {"name": plain, "limit": 50}))["matches"]
    assert any(m["entry_id"] == entry["entry_id"] and m["score"] == 100.0 for m in matches)


async def test_a_matching_birth_date_scores_above_a_different_one_and_a_foreign_country_lowers_it(
    servers: dict[str, ToolServer],
) -> None:
    person = applicant("sanctions_exact_hit")

    async def score(**facts: str) -> float:
        result = await call(servers["sanctions"], "search", {"name": person["name"], "limit": 1, **facts})
        return float(result["matches"][0]["score"])

    same_date = await score(birth_date=person["birth_date"])
    other_date = await score(birth_date="1990-01-01")
    same_year = await score(birth_date=person["birth_date"][:4])
    assert same_date > other_date
    assert same_year > other_date
    assert await score(country="NZ") < await score(country=person["country"])


async def test_matches_come_best_first_within_the_limit_and_echo_the_query(
    servers: dict[str, ToolServer],
) -> None:
    result = await call(servers["sanctions"], "search", {"name": "Mohammed Hussein", "limit": 3})
    scores = [m["score"] for m in result["matches"]]
    assert result["query"] == "Mohammed Hussein"
    assert 0 < len(scores) <= 3
    assert scores == sorted(scores, reverse=True)
    assert all(50 <= s <= 100 for s in scores)


async def test_a_name_of_only_punctuation_matches_nothing(servers: dict[str, ToolServer]) -> None:
    assert (await call(servers["sanctions"], "search", {"name": "-- !! --"}))["matches"] == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"name": ""},
        {"name": "A", "limit": 0},
        {"name": "A", "birth_date": "31/12/1970"},
        {"name": "A", "country": "GBR"},
    ],
    ids=["empty-name", "zero-limit", "bad-date", "bad-country"],
)
async def test_invalid_search_arguments_are_tool_errors(
    servers: dict[str, ToolServer], arguments: dict[str, Any]
) -> None:
    assert "validation error" in await call_error(servers["sanctions"], "search", arguments)


# ----------------------------------------------------------------------------------------------------------
# bureau.get_credit_file


async def test_the_thin_file_shows_one_tradeline_and_a_young_file(servers: dict[str, ToolServer]) -> None:
    file = await call(
        servers["bureau"], "get_credit_file", {"applicant_id": applicant("thin_file")["applicant_id"]}
    )
    assert file["found"] is True
    assert file["tradelines"] <= 2
    assert file["file_age_months"] < 12
    assert 300 <= file["score"] <= 850


async def test_an_applicant_unknown_to_the_bureau_is_not_found_rather_than_an_error(
    servers: dict[str, ToolServer],
) -> None:
    for applicant_id in (applicant("bureau_unknown")["applicant_id"], "APP-9999"):
        file = await call(servers["bureau"], "get_credit_file", {"applicant_id": applicant_id})
        assert file["applicant_id"] == applicant_id
        assert file["found"] is False
        assert file["score"] is None
        assert file["address"] is None


async def test_the_distressed_and_the_strong_files_read_as_their_scenarios_say(
    servers: dict[str, ToolServer],
) -> None:
    distressed = await call(
        servers["bureau"],
        "get_credit_file",
        {"applicant_id": applicant("high_utilization_delinquent")["applicant_id"]},
    )
    strong = await call(
        servers["bureau"], "get_credit_file", {"applicant_id": applicant("strong_clean")["applicant_id"]}
    )
    assert distressed["utilization"] > 0.9
    assert distressed["delinquencies_24m"] >= 3
    assert strong["score"] > distressed["score"]
    assert strong["delinquencies_24m"] == 0
    assert set(strong["address"]) == {"line1", "city", "postcode", "country"}


@pytest.mark.parametrize(
    "arguments", [{"applicant_id": ""}, {"applicant_id": 42}, {}], ids=["empty", "int", "missing"]
)
async def test_invalid_bureau_arguments_are_tool_errors(
    servers: dict[str, ToolServer], arguments: dict[str, Any]
) -> None:
    assert "validation error" in await call_error(servers["bureau"], "get_credit_file", arguments)


# ----------------------------------------------------------------------------------------------------------
# ledger tools


async def test_the_ledger_has_the_newer_address_when_bureau_and_bank_disagree(
    servers: dict[str, ToolServer],
) -> None:
    person = applicant("address_conflict")
    file = await call(servers["bureau"], "get_credit_file", {"applicant_id": person["applicant_id"]})
    account = await call(servers["ledger"], "get_account", {"account_id": person["account_id"]})
    assert account["found"] is True
    assert account["holder_name"] == person["name"]
    assert account["address"] != file["address"]
    assert account["address_updated"] > file["address_reported"]


async def test_monthly_aggregates_are_computed_from_the_raw_transactions(
    servers: dict[str, ToolServer],
) -> None:
    account_id = applicant("strong_clean")["account_id"]
    result = await call(servers["ledger"], "aggregate_by_period", {"account_id": account_id})
    periods = result["periods"]
    assert [p["period"] for p in periods] == [f"2025-{m}" for m in ("11", "12")] + [
        f"2026-{m:02d}" for m in range(1, 11)
    ]
    rows = raw_transactions(account_id)
    for period in periods:
        month = [r["amount"] for r in rows if r["date"].startswith(period["period"])]
        assert period["count"] == len(month)
        assert period["inflow"] == pytest.approx(sum(a for a in month if a > 0), abs=0.005)
        assert period["outflow"] == pytest.approx(-sum(a for a in month if a < 0), abs=0.005)


async def test_a_shorter_window_returns_the_latest_months_and_a_young_account_starts_at_opening(
    servers: dict[str, ToolServer],
) -> None:
    recent = await call(
        servers["ledger"],
        "aggregate_by_period",
        {"account_id": applicant("strong_clean")["account_id"], "months": 3},
    )
    assert [p["period"] for p in recent["periods"]] == ["2026-08", "2026-09", "2026-10"]
    young_id = applicant("thin_file")["account_id"]
    young = await call(servers["ledger"], "aggregate_by_period", {"account_id": young_id})
    opened = (await call(servers["ledger"], "get_account", {"account_id": young_id}))["opened"]
    assert len(young["periods"]) < 12
    assert young["periods"][0]["period"] == opened[:7]


async def test_counterparties_show_the_gambling_share_and_come_largest_first(
    servers: dict[str, ToolServer],
) -> None:
    account_id = applicant("gambling_heavy")["account_id"]
    everything = await call(
        servers["ledger"], "aggregate_by_counterparty", {"account_id": account_id, "top": 100}
    )
    rows = everything["counterparties"]
    gambling = sum(r["outflow"] for r in rows if r["category"] == "gambling")
    assert gambling / sum(r["outflow"] for r in rows) > 0.25
    volumes = [r["inflow"] + r["outflow"] for r in rows]
    assert volumes == sorted(volumes, reverse=True)
    assert sum(r["count"] for r in rows) == len(raw_transactions(account_id))
    assert {"salary", "rent", "groceries", "utilities", "gambling"} <= {r["category"] for r in rows}
    top3 = await call(servers["ledger"], "aggregate_by_counterparty", {"account_id": account_id, "top": 3})
    assert top3["counterparties"] == rows[:3]


async def test_an_unknown_account_is_not_found_by_every_ledger_tool(servers: dict[str, ToolServer]) -> None:
    for tool in ("get_account", "aggregate_by_period", "aggregate_by_counterparty"):
        result = await call(servers["ledger"], tool, {"account_id": "ACC-000000"})
        assert result["found"] is False
        assert result["account_id"] == "ACC-000000"
        assert not result.get("periods")
        assert not result.get("counterparties")
        assert not result.get("address")


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("aggregate_by_period", {"account_id": "ACC-100007", "months": 0}),
        ("aggregate_by_period", {"account_id": "ACC-100007", "months": "twelve"}),
        ("aggregate_by_counterparty", {"account_id": "ACC-100007", "top": 0}),
        ("get_account", {"account_id": ["ACC-100007"]}),
    ],
    ids=["zero-months", "text-months", "zero-top", "list-id"],
)
async def test_invalid_ledger_arguments_are_tool_errors(
    servers: dict[str, ToolServer], tool: str, arguments: dict[str, Any]
) -> None:
    assert "validation error" in await call_error(servers["ledger"], tool, arguments)


# ----------------------------------------------------------------------------------------------------------
# Configuration


def test_a_server_with_a_short_secret_refuses_to_start_and_never_prints_the_secret() -> None:
    secret = "short-secret"
    env = {**os.environ, "ACCORD_PORT": str(free_port()), "ACCORD_TOOLS_GATEWAY_SECRET": secret}
    finished = subprocess.run(
        [sys.executable, "-m", "bureau_tools"], env=env, capture_output=True, timeout=60, check=False
    )
    output = (finished.stdout + finished.stderr).decode()
    assert finished.returncode != 0
    assert "tools_gateway_secret" in output
    assert secret not in output
