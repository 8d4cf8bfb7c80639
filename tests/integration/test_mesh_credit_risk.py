"""Credit-risk end to end through the real mesh: every service its own process on loopback."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import SendMessageRequest, TaskState
from a2a.utils.constants import TransportProtocol

from accord.a2a_credentials import gateway_auth
from accord.cards import WELL_KNOWN_PATHS, skill_schemas
from accord.mesh import MeshRunner
from accord.payloads import skill_request, task_result
from accord.topology import repo_root

AGENTS = ("sanctions-agent", "bureau-agent", "ledger-agent")
INPUT_FIELDS = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")


def applicants() -> list[dict[str, Any]]:
    return json.loads((repo_root() / "data" / "applicants.json").read_text())


def workflow_input(applicant: dict[str, Any]) -> dict[str, Any]:
    return {k: applicant[k] for k in INPUT_FIELDS if k in applicant}


@pytest.mark.parametrize(
    "transport", [TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC]
)
async def test_orchestrator_runs_credit_risk_over_each_a2a_transport(
    mesh: MeshRunner, transport: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(http, mesh.url("orchestrator")).get_agent_card()
        config = ClientConfig(
            streaming=False,
            httpx_client=http,
            grpc_channel_factory=grpc.aio.insecure_channel,
            supported_protocol_bindings=[transport],
        )
        # The card names its OAuth scheme; the SDK's auth interceptor sends the operator's token for it.
        client = ClientFactory(config).create(card, [gateway_auth(mesh.operator_auth(), http)])
        applicant = applicants()[0]
        request = SendMessageRequest(message=skill_request("credit-risk", workflow_input(applicant)))
        events = [event async for event in client.send_message(request)]
        await client.close()
    task = events[-1].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    result = task_result(task)
    assert result is not None
    assert result["status"] == "completed"
    assert result["result"]["decision"] in ("approve", "decline", "refer")
    assert {step["agent"] for step in result["steps"]} == set(AGENTS)


async def test_every_agent_serves_its_card_at_both_well_known_paths(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for name in (*AGENTS, "orchestrator"):
            bodies = []
            for path in WELL_KNOWN_PATHS:
                response = await http.get(mesh.url(name) + path)
                assert response.status_code == 200, (name, path)
                bodies.append(response.json())
            assert bodies[0] == bodies[1]
            assert bodies[0]["name"] == name
            bindings = {i["protocolBinding"] for i in bodies[0]["supportedInterfaces"]}
            assert bindings == {"JSONRPC", "HTTP+JSON", "GRPC"}


async def test_agent_cards_declare_input_and_output_schemas_for_every_skill(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for name in AGENTS:
            card = await A2ACardResolver(http, mesh.url(name)).get_agent_card()
            schemas = skill_schemas(card)
            assert set(schemas) == {skill.id for skill in card.skills}
            for contract in schemas.values():
                assert contract.input_schema["type"] == "object"
                assert contract.output_schema["type"] == "object"


async def test_rest_run_reports_decision_reasons_and_per_agent_latency(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(
        base_url=mesh.url("orchestrator"), auth=mesh.operator_auth(), timeout=30
    ) as http:
        response = await http.post(
            "/v1/workflows/credit-risk/runs", params={"wait": 20}, json=workflow_input(applicants()[1])
        )
        assert response.status_code == 201, response.text
        run = response.json()
        assert response.headers["location"] == f"/v1/runs/{run['id']}"
        fetched = (await http.get(f"/v1/runs/{run['id']}")).json()
    assert fetched["status"] == "completed"
    assert fetched["result"]["reasons"], "every decision names the rules that fired"
    for step in fetched["steps"]:
        assert step["status"] == "completed"
        assert step["latency_ms"] > 0
        assert step["task_id"]


async def test_sample_decisions_cover_approve_decline_and_refer(mesh: MeshRunner) -> None:
    decisions: dict[str, str] = {}
    async with httpx.AsyncClient(
        base_url=mesh.url("orchestrator"), auth=mesh.operator_auth(), timeout=60
    ) as http:
        seen: set[str] = set()
        for applicant in applicants():
            if applicant["scenario"] in seen:
                continue
            seen.add(applicant["scenario"])
            response = await http.post(
                "/v1/workflows/credit-risk/runs", params={"wait": 30}, json=workflow_input(applicant)
            )
            assert response.status_code == 201, response.text
            decisions[applicant["scenario"]] = response.json()["result"]["decision"]
    assert set(decisions.values()) == {"approve", "decline", "refer"}, decisions
