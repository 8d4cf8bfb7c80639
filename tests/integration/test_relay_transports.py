"""Credit-risk end to end through the gateway's A2A relay, on JSON-RPC, HTTP+JSON and gRPC, unary and
streaming, against real processes (tool servers, gateway, registry, the three specialists) and an
orchestrator per case in this process.

Also here: each step runs under its own task grant (issued by the relay, bound to the run, the step and its
inputs, revoked when the step ends), and the relay's refusals (tool policy, delegation policy, an unknown
or unreachable gateway) fail steps without any agent being called. The harness, `RelayMesh`, is
`tests.relay_mesh`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from a2a.utils.constants import TransportProtocol

from accord.gateway_client import tool_scope
from accord.testing.ports import free_port
from tests.relay_mesh import (
    AGENTS,
    OFFSET,
    STEP_AGENTS,
    STEP_BINDINGS,
    STEP_TOOLS,
    RelayMesh,
    policy_changed,
    relay_mesh,
)

# Starting a dozen processes on a busy machine can take minutes; the module's first test pays for it.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RelayMesh]:
    async with relay_mesh(tmp_path_factory.mktemp("relay-mesh"), OFFSET) as running:
        yield running


MODES = [
    pytest.param(TransportProtocol.JSONRPC, False, id="jsonrpc-unary"),
    pytest.param(TransportProtocol.JSONRPC, True, id="jsonrpc-streaming"),
    pytest.param(TransportProtocol.HTTP_JSON, False, id="http-json-unary"),
    pytest.param(TransportProtocol.HTTP_JSON, True, id="http-json-streaming"),
    pytest.param(TransportProtocol.GRPC, False, id="grpc-unary"),
    pytest.param(TransportProtocol.GRPC, True, id="grpc-streaming"),
]
RELAYED_ON = {
    TransportProtocol.JSONRPC: "jsonrpc",
    TransportProtocol.HTTP_JSON: "rest",
    TransportProtocol.GRPC: "grpc",
}


@pytest.mark.parametrize(("transport", "streaming"), MODES)
async def test_credit_risk_runs_end_to_end_through_the_relay_on_each_transport_and_mode(
    mesh: RelayMesh, transport: str, streaming: bool
) -> None:
    async with mesh.orchestrator(relay_transport=transport, relay_streaming=streaming) as orchestrator:
        run = await mesh.run(orchestrator)
    assert run["status"] == "completed", run
    assert run["result"]["decision"] in ("approve", "decline", "refer")
    steps = {step["id"]: step for step in run["steps"]}
    assert {step_id: step["agent"] for step_id, step in steps.items()} == STEP_AGENTS
    assert all(step["status"] == "completed" for step in steps.values())

    # The relay admitted one message per step, for this run, on the mode asked for.
    method = "SendStreamingMessage" if streaming else "SendMessage"
    admitted = [r for r in await mesh.records("gateway", "a2a.relay") if r["run_id"] == run["id"]]
    assert sorted((r["outcome"], r["details"]["agent"], r["details"]["method"]) for r in admitted) == sorted(
        ("allowed", agent, method) for agent in AGENTS
    )
    # Each agent received the relay's signed message on the same transport, from the orchestrator.
    for step_id, agent in STEP_AGENTS.items():
        received = [r for r in await mesh.records(agent, "a2a.message") if r["run_id"] == run["id"]]
        assert [(r["outcome"], r["actor"], r["details"]["task"]) for r in received] == [
            ("allowed", "orchestrator", step_id)
        ]
        assert received[0]["details"]["transport"] == RELAYED_ON[transport]
        assert received[0]["details"]["issuer"] == mesh.gateway_url


async def test_each_step_runs_under_its_own_grant_bound_to_its_inputs_and_revoked_when_it_ends(
    mesh: RelayMesh,
) -> None:
    async with mesh.orchestrator() as orchestrator:
        run = await mesh.run(orchestrator)
    assert run["status"] == "completed", run
    stored = {grant["task"]: grant for grant in await mesh.grants(run["id"])}
    assert set(stored) == set(STEP_AGENTS)
    for step in run["steps"]:
        agent = STEP_AGENTS[step["id"]]
        record = step["grant"]
        assert record["scopes"] == sorted(tool_scope(tool) for tool in STEP_TOOLS[agent])
        assert (record["dropped_scopes"], record["revoked"]) == ([], True)
        grant = stored[step["id"]]
        assert grant["grant_id"] == record["grant_id"]
        assert (grant["agent"], grant["delegated_by"], grant["revoked"]) == (agent, "orchestrator", True)
        assert grant["bindings"] == STEP_BINDINGS[step["id"]]
    # Every tool call of the run carried a token exchanged from the grant of its own step.
    calls = [r for r in await mesh.records("gateway", "tools/call") if r["run_id"] == run["id"]]
    assert len(calls) == 5
    for call in calls:
        assert call["outcome"] == "ok"
        assert call["details"]["grant_id"] == stored[call["details"]["task"]]["grant_id"]


async def test_the_run_record_never_holds_a_grant_a_token_or_a_signature(mesh: RelayMesh) -> None:
    async with mesh.orchestrator(relay_streaming=True) as orchestrator:
        run = await mesh.run(orchestrator)
        fetched = (await mesh.http.get(f"{orchestrator}/v1/runs/{run['id']}")).text
    assert run["status"] == "completed", run
    assert "eyJ" not in fetched


async def test_a_step_the_tool_policy_allows_no_tool_for_fails_and_its_agent_is_never_called(
    mesh: RelayMesh,
) -> None:
    def without_bureau(policy: dict[str, Any]) -> None:
        del policy["clients"]["bureau-agent"]

    async with policy_changed(mesh, mesh.tools_policy, without_bureau):
        tasks_before = await mesh.all_agent_tasks()
        async with mesh.orchestrator() as orchestrator:
            run = await mesh.run(orchestrator)
        tasks_after = await mesh.all_agent_tasks()
    steps = {step["id"]: step for step in run["steps"]}
    assert steps["bureau"]["status"] == "failed"
    assert steps["bureau"]["error"]["reason"] == "policy_denied"
    assert steps["bureau"]["grant"] is None
    assert {steps["sanctions"]["status"], steps["ledger"]["status"]} == {"completed"}
    assert tasks_after["bureau-agent"] == tasks_before["bureau-agent"], "the bureau agent got no task"
    for agent in ("sanctions-agent", "ledger-agent"):
        assert len(tasks_after[agent] - tasks_before[agent]) == 1
    denied = [r for r in await mesh.records("gateway", "a2a.relay") if r["run_id"] == run["id"]]
    assert [(r["outcome"], r["reason"]) for r in denied if r["details"]["agent"] == "bureau-agent"] == [
        ("denied", "policy_denied")
    ]


async def test_an_agent_the_delegation_policy_no_longer_names_is_refused_and_never_called(
    mesh: RelayMesh,
) -> None:
    def without_ledger(policy: dict[str, Any]) -> None:
        del policy["callers"]["orchestrator"]["agents"]["ledger-agent"]

    async with policy_changed(mesh, mesh.delegation_policy, without_ledger):
        tasks_before = await mesh.agent_tasks("ledger-agent")
        async with mesh.orchestrator() as orchestrator:
            run = await mesh.run(orchestrator)
        tasks_after = await mesh.agent_tasks("ledger-agent")
    steps = {step["id"]: step for step in run["steps"]}
    assert (steps["ledger"]["status"], steps["ledger"]["error"]["reason"]) == ("failed", "policy_denied")
    assert tasks_after == tasks_before
    # Restored: the next run delegates to the ledger agent again.
    async with mesh.orchestrator() as orchestrator:
        assert (await mesh.run(orchestrator))["status"] == "completed"


async def test_an_unreachable_gateway_fails_every_step_without_calling_any_agent(mesh: RelayMesh) -> None:
    tasks_before = await mesh.all_agent_tasks()
    closed = f"http://127.0.0.1:{free_port()}"
    # Its callers' tokens still come from the mesh's gateway, trusted by its JWKS like any OIDC issuer.
    callers = {mesh.gateway_url: mesh.gateway_url + "/.well-known/jwks.json"}
    async with mesh.orchestrator(gateway_url=closed, trusted_issuers=callers) as orchestrator:
        run = await mesh.run(orchestrator)
    assert {step["error"]["reason"] for step in run["steps"]} == {"upstream_unavailable"}
    assert await mesh.all_agent_tasks() == tasks_before


async def test_an_orchestrator_the_gateway_does_not_recognise_calls_no_agent(mesh: RelayMesh) -> None:
    tasks_before = await mesh.all_agent_tasks()
    async with mesh.orchestrator(client_secret="not-the-orchestrator-secret-0123") as orchestrator:
        run = await mesh.run(orchestrator)
    assert {step["error"]["reason"] for step in run["steps"]} == {"unauthenticated"}
    assert await mesh.all_agent_tasks() == tasks_before
