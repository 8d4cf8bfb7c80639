"""Runs around the engine: conflicts recorded with their resolution, human reviews that hold and resume a
run, delegation depth, and how often a big fan-out writes its record. Real SQLite; the agents are the
engine tests' in-process stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from accord.audit import AuditLog
from accord.errors import AccordError
from accord.storage import create_engine
from orchestrator.run_store import RunStore
from orchestrator.runs import RunService
from orchestrator.workflows import WorkflowSpec
from tests.stand_in_dispatcher import StandInDispatcher, answer

WAIT_S = 5.0
HOME = {"line1": "1 High St", "city": "Leeds", "postcode": "LS1 1AA", "country": "GB"}
MOVED = {"line1": "9 Low Rd", "city": "York", "postcode": "YO1 9ZZ", "country": "GB"}
APPLICANT = {"applicant_id": "A-1", "account_id": "ACC-1", "name": "Ann Lee", "requested_amount": 3000}


class CountingStore(RunStore):
    updates = 0

    async def update(self, run_id: str, **fields: Any) -> None:
        self.updates += 1
        await super().update(run_id, **fields)


@dataclass
class Harness:
    store: CountingStore
    audit: AuditLog

    def service(self, dispatcher: StandInDispatcher, *specs: WorkflowSpec, max_depth: int = 3) -> RunService:
        return RunService({s.name: s for s in specs}, dispatcher, self.store, self.audit, max_depth)


@pytest_asyncio.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}")
    store, audit = CountingStore(engine), AuditLog(engine, "orchestrator")
    await store.initialize()
    await audit.initialize()
    try:
        yield Harness(store, audit)
    finally:
        await engine.dispose()


def credit_risk(rules: list[Any]) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "credit-risk",
            "version": 1,
            "description": "d",
            "input_schema": {"type": "object", "required": ["applicant_id"]},
            "steps": [
                {"id": "sanctions", "skill": "sanctions-screening", "input": {"name": "$input.name"}},
                {"id": "bureau", "skill": "credit-file", "input": {"applicant_id": "$input.applicant_id"}},
                {
                    "id": "ledger",
                    "skill": "transaction-profile",
                    "input": {"account_id": "$input.account_id"},
                },
            ],
            "facts": [
                {
                    "name": "address",
                    "compare": "address",
                    "sources": [
                        {
                            "step": "bureau",
                            "field": "address",
                            "as_of": "address_reported",
                            "freshness": "batch",
                        },
                        {
                            "step": "ledger",
                            "field": "address",
                            "as_of": "address_updated",
                            "freshness": "real-time",
                        },
                    ],
                    "rules": rules,
                }
            ],
            "synthesis": "credit-risk",
        }
    )


def credit_agents() -> StandInDispatcher:
    return StandInDispatcher(
        {
            "sanctions-screening": answer(
                {"status": "clear", "best_score": 10.0, "matches": [], "confidence": 0.9}
            ),
            "credit-file": answer(
                {
                    "found": True,
                    "score": 720,
                    "thin_file": False,
                    "delinquencies_24m": 0,
                    "utilization": 0.2,
                    "inquiries_6m": 0,
                    "address": HOME,
                    "address_reported": "2025-11-02",
                    "confidence": 0.9,
                }
            ),
            "transaction-profile": answer(
                {
                    "found": True,
                    "months_observed": 12,
                    "avg_monthly_inflow": 4000.0,
                    "avg_monthly_outflow": 2500.0,
                    "net_monthly": 1500.0,
                    "income_volatility": 0.1,
                    "gambling_share": 0.0,
                    "address": MOVED,
                    "address_updated": "2026-02-01",
                    "confidence": 0.9,
                }
            ),
        }
    )


async def test_a_conflict_is_settled_by_its_rule_and_recorded_with_the_run(harness: Harness) -> None:
    runs = harness.service(credit_agents(), credit_risk(["prefer_real_time"]))
    run = await runs.run(runs.workflows["credit-risk"], APPLICANT, "test")
    assert run["status"] == "completed"
    [conflict] = run["conflicts"]
    assert (conflict["fact"], conflict["rule"], conflict["chosen"]) == (
        "address",
        "prefer_real_time",
        "ledger",
    )
    assert run["result"]["facts"] == {"address": MOVED}
    notes = [n for n in run["rationale"] if n["kind"] == "conflict"]
    assert notes
    assert "prefer_real_time" in notes[0]["detail"]
    assert {n["agent"] for n in run["rationale"] if n["kind"] == "agent"} == {
        "sanctions-screening-agent",
        "credit-file-agent",
        "transaction-profile-agent",
    }


async def test_a_conflict_no_rule_settles_waits_for_review_then_a_reviewers_choice_completes_it(
    harness: Harness,
) -> None:
    runs = harness.service(credit_agents(), credit_risk(["prefer_specialist"]))
    run = await runs.run(runs.workflows["credit-risk"], APPLICANT, "test")
    assert run["status"] == "waiting_review"
    assert run["result"] is None
    assert (run["review"]["reason"], run["review"]["facts"]) == ("unresolved_conflict", ["address"])
    assert run["conflicts"][0]["status"] == "unresolved"
    with pytest.raises(AccordError) as refused:
        await runs.review(run["id"], {"decision": "accept"}, "reviewer")
    assert refused.value.reason == "invalid_input"
    await runs.review(run["id"], {"decision": "accept", "facts": {"address": "bureau"}}, "reviewer")
    done = await runs.wait(run["id"], WAIT_S)
    assert done["status"] == "completed"
    assert (done["conflicts"][0]["rule"], done["result"]["facts"]) == ("human_review", {"address": HOME})


async def test_rejecting_conflicting_facts_fails_the_run(harness: Harness) -> None:
    runs = harness.service(credit_agents(), credit_risk([]))
    run = await runs.run(runs.workflows["credit-risk"], APPLICANT, "test")
    rejected = await runs.review(run["id"], {"decision": "reject", "note": "ask the applicant"}, "reviewer")
    assert (rejected["status"], rejected["error"]["reason"]) == ("failed", "review_rejected")


def gated(on_low: str = "review") -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "support-triage",
            "version": 1,
            "description": "d",
            "input_schema": {"type": "object"},
            "steps": [
                {
                    "id": "triage",
                    "skill": "ticket-triage",
                    "min_confidence": 0.5,
                    "on_low_confidence": on_low,
                    "route": {
                        "field": "category",
                        "branches": {"billing": ["billing"], "network": ["network"]},
                    },
                },
                {"id": "billing", "skill": "billing-resolution", "input": {"c": "$steps.triage.customer_id"}},
                {"id": "network", "skill": "network-diagnosis", "input": {"c": "$steps.triage.customer_id"}},
            ],
            "synthesis": "support-resolution",
        }
    )


def support_agents(confidence: float) -> StandInDispatcher:
    resolution = {"ticket_id": "T", "resolution": "r", "actions": [], "escalate": False, "confidence": 0.9}
    return StandInDispatcher(
        {
            "ticket-triage": answer({"category": "billing", "customer_id": "C-1", "confidence": confidence}),
            "billing-resolution": answer(resolution),
            "network-diagnosis": answer(resolution),
        }
    )


async def test_a_low_confidence_classification_waits_for_review_and_an_accept_resumes_the_run(
    harness: Harness,
) -> None:
    agents = support_agents(0.3)
    runs = harness.service(agents, gated())
    run = await runs.run(runs.workflows["support-triage"], {"ticket_id": "T"}, "test")
    assert run["status"] == "waiting_review"
    assert run["review"]["reason"] == "low_confidence"
    assert run["review"]["steps"][0]["step"] == "triage"
    assert [s["status"] for s in run["steps"]] == ["waiting_review", "blocked", "blocked"]
    with pytest.raises(AccordError) as refused:
        await runs.review(run["id"], {"decision": "maybe"}, "reviewer")
    assert refused.value.reason == "invalid_input"
    await runs.review(run["id"], {"decision": "accept", "note": "billing it is"}, "reviewer")
    done = await runs.wait(run["id"], WAIT_S)
    assert done["status"] == "completed"
    assert [s["status"] for s in done["steps"]] == ["completed", "completed", "skipped"]
    assert done["result"]["routed_to"] == ["billing"]
    assert len(agents.called("ticket-triage")) == 1, "the reviewed output is used, not asked for again"
    with pytest.raises(AccordError) as again:
        await runs.review(run["id"], {"decision": "accept"}, "reviewer")
    assert again.value.reason == "review_not_pending"


async def test_rejecting_a_low_confidence_output_skips_what_depends_on_it(harness: Harness) -> None:
    agents = support_agents(0.3)
    runs = harness.service(agents, gated())
    run = await runs.run(runs.workflows["support-triage"], {"ticket_id": "T"}, "test")
    await runs.review(run["id"], {"decision": "reject"}, "reviewer")
    done = await runs.wait(run["id"], WAIT_S)
    assert done["status"] == "completed"
    assert [s["status"] for s in done["steps"]] == ["failed", "skipped", "skipped"]
    assert done["steps"][0]["error"]["reason"] == "review_rejected"
    assert done["result"]["status"] == "unresolved"
    assert agents.called("billing-resolution") == []


async def test_a_request_deeper_than_the_limit_is_refused_and_a_run_sends_its_depth_plus_one(
    harness: Harness,
) -> None:
    agents = support_agents(0.9)
    runs = harness.service(agents, gated(), max_depth=2)
    with pytest.raises(AccordError) as refused:
        await runs.admit("support-triage", {"ticket_id": "T"}, "a2a:orchestrator", depth=3)
    assert refused.value.reason == "delegation_depth_exceeded"
    assert await harness.store.recent(10) == [], "a refused request starts nothing"
    spec = await runs.admit("support-triage", {"ticket_id": "T"}, "a2a:orchestrator", depth=2)
    run = await runs.run(spec, {"ticket_id": "T"}, "a2a:orchestrator", depth=2)
    assert run["delegation_depth"] == 2
    assert {call.depth for call in agents.calls} == {3}


async def test_a_fan_out_of_two_hundred_steps_settles_in_far_fewer_writes_than_steps(
    harness: Harness,
) -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "wide",
            "version": 1,
            "description": "d",
            "input_schema": {"type": "object"},
            "steps": [{"id": f"s{i}", "skill": "work"} for i in range(200)],
            "synthesis": "compliance-memo",
        }
    )
    runs = harness.service(StandInDispatcher({"work": answer({"ok": True}, delay_s=0.01)}), spec)
    async with asyncio.timeout(WAIT_S):
        run = await runs.run(spec, {}, "test")
    assert {s["status"] for s in run["steps"]} == {"completed"}
    assert harness.store.updates < 40, harness.store.updates


async def test_an_accepted_classification_that_names_no_branch_goes_back_to_review_without_a_new_call(
    harness: Harness,
) -> None:
    agents = support_agents(0.3)
    agents.handlers["ticket-triage"] = answer({"category": "legal", "customer_id": "C-1", "confidence": 0.3})
    runs = harness.service(agents, gated())
    run = await runs.run(runs.workflows["support-triage"], {"ticket_id": "T"}, "test")
    assert run["review"]["reason"] == "low_confidence"
    await runs.review(run["id"], {"decision": "accept"}, "reviewer")
    again = await runs.wait(run["id"], WAIT_S)
    assert (again["status"], again["review"]["reason"]) == ("waiting_review", "no_route")
    await runs.review(run["id"], {"decision": "accept", "note": "not ours"}, "reviewer")
    done = await runs.wait(run["id"], WAIT_S)
    assert done["status"] == "completed"
    assert [s["status"] for s in done["steps"]] == ["completed", "skipped", "skipped"]
    assert len(agents.called("ticket-triage")) == 1
