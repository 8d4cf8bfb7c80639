"""One trace per credit-risk run across the whole mesh (real processes: the session mesh), on each A2A
transport between the orchestrator, the gateway's relay and the agents (JSON-RPC, HTTP+JSON, gRPC: the
orchestrator is restarted with `ACCORD_RELAY_TRANSPORT` for each and put back on JSON-RPC afterwards):
every span of every service carries the caller's trace id, and the spans form one tree from the caller's
span down to the tool servers, more than four hops deep, with the GenAI `invoke_agent` and `execute_tool`
spans where the work happens."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from accord.mesh import MeshRunner
from accord.span_store import SpanReader, StoredSpan
from accord.topology import repo_root

INPUT_FIELDS = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")
AGENTS = ("sanctions-agent", "bureau-agent", "ledger-agent")
SPANS_WAIT_S = 20.0
TRANSPORTS = ("JSONRPC", "HTTP+JSON", "GRPC")


def strong_applicant() -> dict[str, Any]:
    applicants = json.loads((repo_root() / "data" / "applicants.json").read_text())
    chosen = next(a for a in applicants if a["scenario"] == "strong_clean")
    return {key: chosen[key] for key in INPUT_FIELDS if key in chosen}


def hops_to_root(span: StoredSpan, by_id: dict[str, StoredSpan]) -> list[StoredSpan]:
    chain = [span]
    while chain[-1].parent_span_id in by_id:
        chain.append(by_id[chain[-1].parent_span_id])
    return chain


async def spans_of(mesh: MeshRunner, trace_id: str, services: set[str], root: str) -> list[StoredSpan]:
    """The trace's spans once every expected service has flushed its share: spans are exported in
    batches, so a parent (the orchestrator's server span ends last) may land after its children."""
    reader = SpanReader(mesh.state_dir)
    deadline = time.monotonic() + SPANS_WAIT_S
    while True:
        spans = await reader.trace(trace_id)
        tool_calls = [s for s in spans if s.name.startswith("execute_tool")]
        known = {s.span_id for s in spans} | {root}
        complete = all(s.parent_span_id in known for s in spans)
        if services <= {s.service for s in spans} and len(tool_calls) >= 5 and complete:
            return spans
        if time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.2)


@pytest.fixture(params=TRANSPORTS)
def relay_transport(request: pytest.FixtureRequest, mesh: MeshRunner) -> Iterator[str]:
    """The session mesh's orchestrator, reaching the relay (and through it the agents) on one transport."""
    transport: str = request.param
    if transport != "JSONRPC":
        restart_orchestrator(mesh, transport)
    try:
        yield transport
    finally:
        if transport != "JSONRPC":
            restart_orchestrator(mesh, None)


def restart_orchestrator(mesh: MeshRunner, transport: str | None) -> None:
    env = mesh.extra_env.setdefault("orchestrator", {})
    env.pop("ACCORD_RELAY_TRANSPORT", None)
    if transport is not None:
        env["ACCORD_RELAY_TRANSPORT"] = transport
    mesh.kill("orchestrator")
    mesh.start()


async def test_a_credit_risk_run_is_one_trace_from_the_caller_to_the_tool_servers(
    mesh: MeshRunner, relay_transport: str
) -> None:
    trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
    async with httpx.AsyncClient(timeout=60, auth=mesh.operator_auth()) as http:
        response = await http.post(
            mesh.url("orchestrator") + "/v1/workflows/credit-risk/runs",
            params={"wait": 45},
            json=strong_applicant(),
            headers={"traceparent": f"00-{trace_id}-{root}-01"},
        )
    assert response.status_code == 201, response.text
    services = {"orchestrator", "gateway", *AGENTS, "sanctions-tools", "bureau-tools", "ledger-tools"}

    spans = await spans_of(mesh, trace_id, services, root)

    assert services <= {s.service for s in spans}
    assert {s.trace_id for s in spans} == {trace_id}
    by_id = {s.span_id: s for s in spans}
    # One tree: every span's parent is in the trace, except the server span that answered the caller.
    roots = [s for s in spans if s.parent_span_id not in by_id]
    assert [(s.service, s.parent_span_id) for s in roots] == [("orchestrator", root)]
    for agent in AGENTS:
        client = [s for s in spans if s.service == "orchestrator" and s.name == f"invoke_agent {agent}"]
        own = [s for s in spans if s.service == agent and s.name == f"invoke_agent {agent}"]
        assert client, f"the orchestrator's invoke_agent span for {agent}"
        assert own, f"{agent}'s own invoke_agent span"
        # agent's work <- agent's server span <- gateway's call <- relay <- orchestrator's invoke_agent
        path = [s.service for s in hops_to_root(own[0], by_id)]
        assert path[:2] == [agent, agent]
        assert "gateway" in path
        assert client[0] in hops_to_root(own[0], by_id)
    # Each tool server answered its call inside the gateway's call to it (not just a catalog listing).
    for server in ("sanctions-tools", "bureau-tools", "ledger-tools"):
        calls = [s for s in spans if s.service == server and s.name.startswith("tools/call ")]
        assert calls, f"{server} served no tools/call in the trace"
        assert all(by_id[s.parent_span_id].service == "gateway" for s in calls)
    tool_spans = [s for s in spans if s.name.startswith("execute_tool")]
    assert len(tool_spans) >= 5
    deepest = max(len(hops_to_root(s, by_id)) for s in spans)
    services_on_deepest = {
        s.service for s in hops_to_root(max(spans, key=lambda s: len(hops_to_root(s, by_id))), by_id)
    }
    assert deepest >= 8
    assert len(services_on_deepest) >= 4, "caller side, gateway, agent, tool server: four hops at least"
