"""Credit-risk's approval gate through real processes (the session mesh): a refer decision waits for a
person, who approves or rejects it with `accord approve` (as the operator, over the orchestrator's API) or,
as an A2A caller, by answering on the task that asked (`input-required`); the decision is recorded with
who made it and why, and audited."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Role, SendMessageRequest, TaskState
from typer.testing import CliRunner

from accord.a2a_credentials import gateway_auth
from accord.audit import AuditLog
from accord.cli.main import app as cli
from accord.keys import KeyRing
from accord.mesh import MeshRunner
from accord.payloads import data_part, first_data, skill_request, task_result
from accord.storage import create_engine
from accord.tokens import issue_access_token
from accord.topology import repo_root

INPUT_FIELDS = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")


def thin_file_applicant() -> dict[str, Any]:
    applicants = json.loads((repo_root() / "data" / "applicants.json").read_text())
    chosen = next(a for a in applicants if a["scenario"] == "thin_file")
    return {key: chosen[key] for key in INPUT_FIELDS if key in chosen}


async def refer_run(mesh: MeshRunner) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60, auth=mesh.operator_auth()) as http:
        response = await http.post(
            mesh.url("orchestrator") + "/v1/workflows/credit-risk/runs",
            params={"wait": 45},
            json=thin_file_applicant(),
        )
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def approve(mesh: MeshRunner, run_id: str, *extra: str) -> Any:
    args = ["approve", run_id, "refer", "--state-dir", str(mesh.state_dir), *extra]
    return await asyncio.to_thread(CliRunner().invoke, cli, args)


async def approvals_audited(mesh: MeshRunner, run_id: str) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{mesh.state_dir / 'orchestrator.db'}")
    try:
        records = await AuditLog(engine, "orchestrator").records(run_id)
    finally:
        await engine.dispose()
    return [r for r in records if r["action"] in ("run.approval_requested", "run.approval")]


@pytest.mark.parametrize(("flag", "status"), [((), "completed"), (("--reject",), "failed")])
async def test_a_refer_decision_waits_for_a_person_who_decides_with_accord_approve(
    mesh: MeshRunner, flag: tuple[str, ...], status: str
) -> None:
    run = await refer_run(mesh)
    assert (run["status"], run["result"]["decision"]) == ("waiting_approval", "refer")
    assert run["approvals"]["refer"]["status"] == "pending"

    decided = await approve(mesh, run["id"], *flag, "--reason", "income verified by phone")
    assert decided.exit_code == 0, decided.output

    async with httpx.AsyncClient(timeout=30, auth=mesh.operator_auth()) as http:
        final = (await http.get(f"{mesh.url('orchestrator')}/v1/runs/{run['id']}")).json()
    gate = final["approvals"]["refer"]
    assert final["status"] == status
    assert (gate["decided_by"], gate["reason"]) == ("rest:operator", "income verified by phone")
    audited = [(r["action"], r["actor"], r["outcome"]) for r in await approvals_audited(mesh, run["id"])]
    verdict = "rejected" if flag else "approved"
    assert audited == [
        ("run.approval_requested", "orchestrator", "waiting_approval"),
        ("run.approval", "rest:operator", verdict),
    ]

    again = await approve(mesh, run["id"], "--reason", "twice")
    assert again.exit_code == 1
    assert "approval_not_pending" in again.output


async def test_an_a2a_caller_is_asked_for_the_decision_and_answers_on_the_same_task(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        card = await A2ACardResolver(http, mesh.url("orchestrator")).get_agent_card()
        client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(
            card, [gateway_auth(mesh.operator_auth(), http)]
        )
        request = SendMessageRequest(message=skill_request("credit-risk", thin_file_applicant()))
        [event] = [e async for e in client.send_message(request)]
        task = event.task
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        question = first_data(task.status.message.parts)
        assert question is not None
        assert set(question["approvals"]) == {"refer"}

        answer = Message(
            role=Role.ROLE_USER,
            message_id=uuid.uuid4().hex,
            task_id=task.id,
            context_id=task.context_id,
            parts=[data_part({"gate": "refer", "decision": "approve", "reason": "confirmed on the phone"})],
        )
        [event] = [e async for e in client.send_message(SendMessageRequest(message=answer))]
        await client.close()
    done = event.task
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    result = task_result(done)
    assert result is not None
    assert result["status"] == "completed"
    gate = result["approvals"]["refer"]
    assert (gate["status"], gate["decided_by"], gate["reason"]) == (
        "approved",
        "a2a:operator",
        "confirmed on the phone",
    )


async def test_a_caller_without_the_review_scope_cannot_decide_and_the_gate_stays_open(
    mesh: MeshRunner,
) -> None:
    ring = KeyRing.load_or_create(mesh.state_dir / "gateway-keys.json")
    starter = issue_access_token(
        ring, mesh.url("gateway"), "starter", "starter", mesh.url("orchestrator"), ["runs:start"], 300
    )
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {starter}"}) as http:
        card = await A2ACardResolver(http, mesh.url("orchestrator")).get_agent_card()
        client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
        request = SendMessageRequest(message=skill_request("credit-risk", thin_file_applicant()))
        [event] = [e async for e in client.send_message(request)]
        task = event.task
        answer = Message(
            role=Role.ROLE_USER,
            message_id=uuid.uuid4().hex,
            task_id=task.id,
            context_id=task.context_id,
            parts=[data_part({"gate": "refer", "decision": "approve", "reason": "trust me"})],
        )
        [event] = [e async for e in client.send_message(SendMessageRequest(message=answer))]
        await client.close()
    assert event.task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    refusal = first_data(event.task.status.message.parts)
    assert refusal is not None
    assert refusal["error"]["reason"] == "insufficient_scope"
    run_id = (task_result(event.task) or {})["run_id"]
    async with httpx.AsyncClient(timeout=30, auth=mesh.operator_auth()) as http:
        run = (await http.get(f"{mesh.url('orchestrator')}/v1/runs/{run_id}")).json()
    assert (run["status"], run["approvals"]["refer"]["status"]) == ("waiting_approval", "pending")
