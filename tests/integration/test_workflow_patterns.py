"""The shipped workflows end to end through the real mesh (every service its own process on loopback):
a router (support-triage), a critic-refiner loop (compliance-memo), a fan-out whose facts conflict
(credit-risk), per-step progress over the orchestrator's A2A endpoint, and the delegation depth limit.

Hierarchical orchestration and the failure guards (contracts, unresolvable conflicts, dataflow timing)
need agents and workflows of their own: `test_workflow_guards.py`."""

from __future__ import annotations

import json
from typing import Any

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Role, SendMessageRequest, TaskState

from accord.a2a_credentials import gateway_auth
from accord.delegation import DEFAULT_MAX_DEPTH, DELEGATION_METADATA_KEY
from accord.mesh import MeshRunner
from accord.payloads import data_part, first_data, skill_request, task_result, to_struct
from accord.topology import repo_root

WAIT_S = 45.0


def dataset(name: str) -> Any:
    return json.loads((repo_root() / "data" / name).read_text())


def ticket(scenario: str) -> str:
    return str(
        next(t["ticket_id"] for t in dataset("support/tickets.json")["tickets"] if t["scenario"] == scenario)
    )


def topic(scenario: str) -> dict[str, str]:
    found = next(t for t in dataset("compliance/facts.json")["topics"] if t["scenario"] == scenario)
    return {"topic": found["topic"], "rule_set": found["rule_set"]}


def applicant(scenario: str) -> dict[str, Any]:
    found = next(a for a in dataset("applicants.json") if a["scenario"] == scenario)
    keys = ("applicant_id", "account_id", "name", "birth_date", "country", "requested_amount")
    return {k: found[k] for k in keys if k in found}


async def start(mesh: MeshRunner, workflow: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=mesh.url("orchestrator"), auth=mesh.operator_auth(), timeout=WAIT_S + 10
    ) as http:
        response = await http.post(f"/v1/workflows/{workflow}/runs", params={"wait": WAIT_S}, json=body)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in run["steps"]}


# --- router ---------------------------------------------------------------------------------------


async def test_support_triage_runs_only_the_specialist_the_ticket_is_routed_to(mesh: MeshRunner) -> None:
    run = await start(mesh, "support-triage", {"ticket_id": ticket("billing_overbilled_plan")})
    assert run["status"] == "completed", run
    steps = steps_of(run)
    assert (steps["triage"]["agent"], steps["triage"]["route"]["selected"]) == ("triage-agent", ["billing"])
    assert (steps["billing"]["status"], steps["billing"]["agent"]) == ("completed", "billing-agent")
    for branch in ("network", "access"):
        assert steps[branch]["status"] == "skipped"
        assert steps[branch]["skipped"]["reason"] == "branch_not_taken"
        assert steps[branch]["attempts"] == [], "a branch not taken reaches no agent"
    result = run["result"]
    assert (result["category"], result["routed_to"], result["specialist"]) == (
        "billing",
        ["billing"],
        "billing-agent",
    )
    assert any(action["type"].startswith("credit") for action in result["actions"])
    for step in (steps["triage"], steps["billing"]):
        assert step["finished_at"] >= step["started_at"] > 0
        assert step["latency_ms"] > 0
    kinds = {(note["step"], note["kind"]) for note in run["rationale"]}
    assert {("triage", "agent"), ("triage", "route"), ("billing", "agent"), ("network", "skip")} <= kinds


async def test_a_misleading_ticket_is_routed_by_the_records_not_its_words(mesh: MeshRunner) -> None:
    cases = {
        "misleading_suspended_for_non_payment": "billing",
        "misleading_lockout_as_outage": "access",
        "misleading_outage_as_billing": "network",
    }
    for scenario, branch in cases.items():
        run = await start(mesh, "support-triage", {"ticket_id": ticket(scenario)})
        assert run["status"] == "completed", (scenario, run)
        assert run["result"]["routed_to"] == [branch], scenario
        assert steps_of(run)[branch]["status"] == "completed"


async def test_an_ambiguous_ticket_waits_for_a_human_and_the_reviewers_accept_resumes_it(
    mesh: MeshRunner,
) -> None:
    run = await start(mesh, "support-triage", {"ticket_id": ticket("ambiguous_bill_and_connection")})
    assert run["status"] == "waiting_review"
    assert run["review"]["reason"] == "low_confidence"
    steps = steps_of(run)
    assert steps["triage"]["status"] == "waiting_review"
    assert steps["triage"]["confidence"] < 0.5
    assert {steps[b]["status"] for b in ("network", "billing", "access")} == {"blocked"}
    async with httpx.AsyncClient(
        base_url=mesh.url("orchestrator"), auth=mesh.operator_auth(), timeout=WAIT_S + 10
    ) as http:
        fetched = (await http.get(f"/v1/runs/{run['id']}")).json()
        assert (fetched["status"], fetched["review"]["reason"]) == ("waiting_review", "low_confidence")
        accepted = await http.post(
            f"/v1/runs/{run['id']}/review", json={"decision": "accept", "note": "checked"}
        )
        assert accepted.status_code == 202, accepted.text
        done = (await http.get(f"/v1/runs/{run['id']}", params={"wait": WAIT_S})).json()
        again = await http.post(f"/v1/runs/{run['id']}/review", json={"decision": "accept"})
    assert done["status"] == "completed", done
    selected = steps_of(done)["triage"]["route"]["selected"]
    assert steps_of(done)[selected[0]]["status"] == "completed"
    assert (again.status_code, again.json()["error"]["reason"]) == (409, "review_not_pending")


# --- critic-refiner loop --------------------------------------------------------------------------


async def test_the_compliance_memo_loop_revises_until_the_reviewer_passes_it(mesh: MeshRunner) -> None:
    run = await start(mesh, "compliance-memo", topic("converges_after_two_revisions"))
    assert run["status"] == "completed", run
    memo = steps_of(run)["memo"]
    assert (memo["loop"]["state"], memo["loop"]["iterations"]) == ("accepted", 3)
    assert [entry["accepted"] for entry in memo["loop"]["history"]] == [False, False, True]
    assert {entry["reviewed_by"] for entry in memo["loop"]["history"]} == {"review-agent"}
    result = run["result"]
    assert (result["status"], result["passed"], result["score"]) == ("accepted", True, 1.0)
    assert result["unresolved_findings"] == []
    assert result["memo"]["title"]


async def test_a_memo_that_never_converges_stops_at_the_cap_with_the_last_draft_and_open_findings(
    mesh: MeshRunner,
) -> None:
    run = await start(mesh, "compliance-memo", topic("never_converges_missing_facts"))
    assert run["status"] == "completed", run
    memo = steps_of(run)["memo"]
    assert (memo["loop"]["state"], memo["loop"]["iterations"]) == ("max_iterations_reached", 4)
    tasks = [attempt["task"] for attempt in memo["attempts"]]
    assert tasks == [
        "memo",
        "memo.review.0",
        "memo.draft.1",
        "memo.review.1",
        "memo.draft.2",
        "memo.review.2",
        "memo.draft.3",
        "memo.review.3",
    ]
    result = run["result"]
    assert (result["status"], result["iterations"], result["passed"]) == ("max_iterations_reached", 4, False)
    assert {f["rule_id"] for f in result["unresolved_findings"]} == {"DP-03", "DP-09"}
    assert {u["rule_id"] for u in result["drafter_unresolved"]} == {"DP-03", "DP-09"}
    assert result["memo"]["sections"], "the last draft is returned"


# --- fan-out with conflicting facts ---------------------------------------------------------------


async def test_a_bureau_and_ledger_address_conflict_is_settled_by_the_real_time_rule_and_recorded(
    mesh: MeshRunner,
) -> None:
    run = await start(mesh, "credit-risk", applicant("address_conflict"))
    assert run["status"] == "completed", run
    [conflict] = run["conflicts"]
    assert (conflict["fact"], conflict["status"], conflict["rule"]) == (
        "address",
        "resolved",
        "prefer_real_time",
    )
    assert conflict["chosen"] == "ledger"
    assert [(r["step"], r["agent"]) for r in conflict["reports"]] == [
        ("bureau", "bureau-agent"),
        ("ledger", "ledger-agent"),
    ]
    ledger = steps_of(run)["ledger"]["output"]
    assert run["result"]["facts"]["address"] == ledger["address"]
    assert any(
        note["kind"] == "conflict" and "prefer_real_time" in note["detail"] for note in run["rationale"]
    )


# --- the orchestrator as an A2A agent -------------------------------------------------------------


async def test_the_a2a_endpoint_streams_each_steps_status_and_ends_with_the_run_artifact(
    mesh: MeshRunner,
) -> None:
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        card = await A2ACardResolver(http, mesh.url("orchestrator")).get_agent_card()
        assert {"support-triage", "compliance-memo", "credit-risk"} <= {skill.id for skill in card.skills}
        auth = gateway_auth(mesh.operator_auth(), http)
        client = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card, [auth])
        request = SendMessageRequest(
            message=skill_request("support-triage", {"ticket_id": ticket("access_locked_out")})
        )
        events = [event async for event in client.send_message(request)]
        await client.close()
    progress = [
        first_data(event.status_update.status.message.parts)
        for event in events
        if event.WhichOneof("payload") == "status_update"
        and event.status_update.status.state == TaskState.TASK_STATE_WORKING
        and event.status_update.status.HasField("message")
    ]
    seen = [(p["step"], p["status"]) for p in progress if p]
    assert (
        seen.index(("triage", "running"))
        < seen.index(("triage", "completed"))
        < seen.index(("access", "running"))
    )
    assert ("network", "skipped") in seen
    assert ("access", "completed") in seen
    final = [e for e in events if e.WhichOneof("payload") == "artifact_update"]
    assert final, "the run summary arrives as the result artifact"
    summary = first_data(final[-1].artifact_update.artifact.parts)
    assert summary is not None
    assert (summary["status"], summary["result"]["routed_to"]) == ("completed", ["access"])


async def test_a_request_deeper_than_the_delegation_limit_is_rejected_before_anything_runs(
    mesh: MeshRunner,
) -> None:
    message = Message(
        role=Role.ROLE_USER,
        message_id="too-deep-1",
        parts=[data_part({"ticket_id": ticket("access_locked_out")})],
        metadata=to_struct(
            {"accord.skill": "support-triage", DELEGATION_METADATA_KEY: {"depth": DEFAULT_MAX_DEPTH + 1}}
        ),
    )
    async with httpx.AsyncClient(
        base_url=mesh.url("orchestrator"), auth=mesh.operator_auth(), timeout=WAIT_S
    ) as http:
        before = len((await http.get("/v1/runs", params={"limit": 500})).json()["runs"])
        card = await A2ACardResolver(http, mesh.url("orchestrator")).get_agent_card()
        client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
        events = [event async for event in client.send_message(SendMessageRequest(message=message))]
        await client.close()
        after = len((await http.get("/v1/runs", params={"limit": 500})).json()["runs"])
    task = events[-1].task
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    error = first_data(task.status.message.parts)
    assert error is not None
    assert error["error"]["reason"] == "delegation_depth_exceeded"
    assert task_result(task) is None
    assert after == before, "nothing was recorded or run"
