"""The run's budget of tool calls, enforced by the gateway (real processes: the session mesh).

Credit-risk's three agents call their tools in parallel. Under `Accord-Budget: tool_calls=1` the gateway
lets exactly one tool call of the run through; every other is refused `budget_exceeded` before any
upstream sees it, and audited with the run's id, whatever the agents do between two checks of the
orchestrator. The orchestrator hears of it from the failing steps and ends the run `budget_exceeded`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from accord.audit import AuditLog
from accord.mesh import MeshRunner
from accord.storage import create_engine
from accord.topology import repo_root
from tests.service_metrics import metric

INPUT_FIELDS = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")


def applicant() -> dict[str, Any]:
    chosen = json.loads((repo_root() / "data" / "applicants.json").read_text())[0]
    return {key: chosen[key] for key in INPUT_FIELDS if key in chosen}


async def tool_calls(mesh: MeshRunner, run_id: str) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{mesh.state_dir / 'gateway.db'}")
    try:
        records = await AuditLog(engine, "gateway").records(run_id)
    finally:
        await engine.dispose()
    return [record for record in records if record["action"] == "tools/call"]


async def run_credit_risk(mesh: MeshRunner, budget: str | None) -> dict[str, Any]:
    headers = {"Accord-Budget": budget} if budget else {}
    async with httpx.AsyncClient(timeout=60, auth=mesh.operator_auth()) as http:
        response = await http.post(
            mesh.url("orchestrator") + "/v1/workflows/credit-risk/runs",
            params={"wait": 45},
            json=applicant(),
            headers=headers,
        )
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def test_the_gateway_lets_a_run_make_only_the_tool_calls_its_budget_allows(mesh: MeshRunner) -> None:
    run = await run_credit_risk(mesh, "tool_calls=1")

    calls = await tool_calls(mesh, run["id"])
    allowed = [c for c in calls if c["outcome"] != "denied"]
    refused = [c for c in calls if c["outcome"] == "denied"]
    assert len(allowed) == 1, calls
    assert refused, "the other agents' calls reached the gateway and were refused there"
    assert {c["reason"] for c in refused} == {"budget_exceeded"}
    assert run["status"] == "budget_exceeded", run["steps"]
    assert (run["error"]["reason"], run["error"]["limit"]) == ("budget_exceeded", "tool_calls")
    assert run["budget"]["limits"]["tool_calls"] == 1
    assert run["budget"]["exceeded"] == "tool_calls"
    # Not retried: a spent budget is not a transient failure.
    assert run["budget"]["spent"]["tasks"] == 3


async def test_a_run_within_its_tool_call_budget_completes(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        observed = await metric(http, mesh.url("orchestrator"), "accord_run_budget_used_ratio_count")
        run = await run_credit_risk(mesh, "tasks=30, tool_calls=50")
        after = await metric(http, mesh.url("orchestrator"), "accord_run_budget_used_ratio_count")
        used = await metric(http, mesh.url("orchestrator"), "accord_run_budget_used_ratio_sum", limit="tasks")
        dispatching = await metric(
            http, mesh.url("orchestrator"), "accord_queue_depth", queue="steps_dispatching"
        )
        audit_queue = await metric(http, mesh.url("gateway"), "accord_queue_depth", queue="audit_records")
    calls = await tool_calls(mesh, run["id"])
    assert run["status"] == "completed"
    assert calls
    assert all(c["outcome"] != "denied" for c in calls)
    # On /metrics: how much of its budget the run used, and queue depths (idle again now).
    assert after == observed + 1
    assert used >= 3 / 30  # at least its three agent tasks
    assert (dispatching, audit_queue) == (0, 0)
