"""What stops cascading errors, through real processes: an agent whose output breaks its contract, facts
no rule can reconcile, dataflow timing, a workflow whose steps are served by an orchestrator, an agent that
hangs (timed out and cancelled at the agent) and one that keeps failing (its circuit breaker opens).

A mesh of its own (registry, gateway, the credit-risk specialists and their tool servers, the
orchestrator as processes) runs the shipped credit-risk workflows plus the workflows written here, with a
delegation policy that also lets the orchestrator call the test agents and itself. The test agents are
built with the agent SDK in this process, sign their cards as the mesh's publisher, register in the real
registry and accept only messages the real gateway relay signed; they record what they receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from a2a.types import AgentCard
from pydantic import BaseModel, Field

from accord.agent import Agent, ToolBox
from accord.agent.settings import AgentSettings
from accord.agent.testing import RunningAgent, running_agent
from accord.cards import build_card
from accord.errors import AccordError
from accord.mesh import MeshRunner
from accord.span_store import SpanReader, StoredSpan
from accord.topology import repo_root
from accord.trace_analysis import SpanTree, summarize

WAIT_S = 45.0
PORT_OFFSET = 14000  # ports 22700-22818: below the ephemeral range, where no client port lands
MESH_START_S = 300.0
SERVICES = {
    "registry",
    "gateway",
    "sanctions-tools",
    "bureau-tools",
    "ledger-tools",
    # Not used here, but the gateway is ready only once every upstream it federates is.
    "support-tools",
    "compliance-tools",
    "sanctions-agent",
    "bureau-agent",
    "ledger-agent",
    "orchestrator",
}
SHIPPED = ("credit-risk", "joint-credit-risk")
HANG_TIMEOUT_S = 1.5
BREAKER_FAILURES, BREAKER_OPEN_S = 3, 3.0
# Calls of a skill before its deadline is learned from them (the shipped default is 20).
LEARNING_CALLS = 5
# The orchestrator's default step deadline (ACCORD_STEP_TIMEOUT_S) and its floor for learned ones.
DEFAULT_STEP_TIMEOUT_S, DEADLINE_FLOOR_S = 30.0, 2.0

WORKFLOWS: dict[str, dict[str, Any]] = {
    "contract-guard": {
        "description": "A classifier that breaks its contract, a step that reads it, one that does not.",
        "input_schema": {"type": "object", "required": ["ticket_id"]},
        "steps": [
            {"id": "classify", "skill": "scratch-classification", "input": {"ticket_id": "$input.ticket_id"}},
            {
                "id": "act",
                "skill": "scratch-recording",
                "input": {"note": "act", "category": "$steps.classify.category"},
            },
            {"id": "sibling", "skill": "scratch-recording", "input": {"note": "sibling"}},
        ],
        "synthesis": "collect",
    },
    "address-review": {
        "description": "Bureau and ledger addresses with a rule that cannot settle a disagreement.",
        "input_schema": {"type": "object", "required": ["applicant_id", "account_id"]},
        "steps": [
            {"id": "bureau", "skill": "credit-file", "input": {"applicant_id": "$input.applicant_id"}},
            {"id": "ledger", "skill": "transaction-profile", "input": {"account_id": "$input.account_id"}},
        ],
        "facts": [
            {
                "name": "address",
                "compare": "address",
                "sources": [
                    {"step": "bureau", "field": "address", "authority": "specialist"},
                    {"step": "ledger", "field": "address", "authority": "specialist"},
                ],
                "rules": ["prefer_specialist"],
            }
        ],
        "synthesis": "collect",
    },
    "hang-guard": {
        "description": "A step whose agent hangs past its deadline, beside one that answers.",
        "input_schema": {"type": "object"},
        "steps": [
            {"id": "hang", "skill": "scratch-hang", "timeout_s": HANG_TIMEOUT_S},
            {"id": "fine", "skill": "scratch-fast"},
        ],
        "synthesis": "collect",
    },
    "breaker-guard": {
        "description": "A step whose agent keeps failing, beside one that answers.",
        "input_schema": {"type": "object"},
        "steps": [
            {"id": "flaky", "skill": "scratch-failing"},
            {"id": "fine", "skill": "scratch-fast"},
        ],
        "synthesis": "collect",
    },
    "learned-deadline": {
        "description": "A step with no timeout of its own: its deadline is learned from its agent.",
        "input_schema": {"type": "object", "required": ["hang"]},
        "steps": [{"id": "work", "skill": "scratch-learned", "input": {"hang": "$input.hang"}}],
        "synthesis": "collect",
    },
    "fast-and-slow": {
        "description": "A fast step with a successor beside a slow sibling.",
        "input_schema": {"type": "object"},
        "steps": [
            {"id": "fast", "skill": "scratch-fast"},
            {"id": "slow", "skill": "scratch-slow"},
            {"id": "after_fast", "skill": "scratch-successor", "input": {"after": "$steps.fast.done"}},
        ],
        "synthesis": "collect",
    },
}


# --- test agents ----------------------------------------------------------------------------------


class ScratchAgent(Agent):
    """An SDK agent whose card source lives here rather than in `agent-cards/`."""

    def build_card(self, settings: AgentSettings) -> AgentCard:
        source = {
            "name": self.name,
            "description": f"test agent {self.name}",
            "version": "1.0.0",
            "capabilities": {"streaming": False},
            "defaultInputModes": ["application/json"],
            "defaultOutputModes": ["application/json"],
            "skills": [{"id": s, "name": s, "description": s, "tags": ["test"]} for s in self.skills],
        }
        return build_card(
            source, settings.base_url, settings.grpc_address(settings.grpc_port), self.skill_schemas()
        )


class Ticket(BaseModel):
    ticket_id: str


class Classification(BaseModel):
    # The card promises one of three categories; the code does not hold itself to it (the broken agent).
    category: str = Field(json_schema_extra={"enum": ["network", "billing", "access"]})
    confidence: float = Field(ge=0, le=1)


class Note(BaseModel):
    note: str
    category: str | None = None


class Recorded(BaseModel):
    recorded: int
    confidence: float = 1.0


class Empty(BaseModel):
    after: bool | None = None


class MaybeHang(BaseModel):
    hang: bool


class Done(BaseModel):
    done: bool
    confidence: float = 1.0


@dataclass
class Witness:
    """What the test agents saw and when."""

    classified: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    successor_started: asyncio.Event = field(default_factory=asyncio.Event)
    times: dict[str, float] = field(default_factory=dict)
    hang_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    failing_calls: int = 0


def sabotage_agent(witness: Witness) -> ScratchAgent:
    agent = ScratchAgent("sabotage-agent")

    @agent.skill("scratch-classification")
    async def classify(request: Ticket, _tools: ToolBox) -> Classification:
        witness.classified += 1
        return Classification(category="sabotage", confidence=0.9)

    return agent


def flaky_agent(witness: Witness) -> ScratchAgent:
    agent = ScratchAgent("flaky-agent")

    @agent.skill("scratch-failing")
    async def failing(_request: Empty, _tools: ToolBox) -> Done:
        witness.failing_calls += 1
        raise AccordError("upstream_unavailable", "this agent's own backend is down")

    return agent


def recorder_agent(witness: Witness) -> ScratchAgent:
    agent = ScratchAgent("recorder-agent")

    @agent.skill("scratch-recording")
    async def record(request: Note, _tools: ToolBox) -> Recorded:
        witness.received.append(request.model_dump(exclude_none=True))
        return Recorded(recorded=len(witness.received))

    @agent.skill("scratch-fast")
    async def fast(_request: Empty, _tools: ToolBox) -> Done:
        return Done(done=True)

    @agent.skill("scratch-slow")
    async def slow(_request: Empty, _tools: ToolBox) -> Done:
        # Finishes only once the fast step's successor has started (or, if the scheduler made it wait for
        # this sibling, after the deadline, which the test then reports).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_S / 3):
                await witness.successor_started.wait()
        witness.times["slow_finished"] = time.time()
        return Done(done=True)

    @agent.skill("scratch-hang")
    async def hang(_request: Empty, _tools: ToolBox) -> Done:
        try:
            await asyncio.sleep(WAIT_S * 2)
        except asyncio.CancelledError:
            witness.hang_cancelled.set()  # the orchestrator's A2A cancel reached the running skill
            raise
        return Done(done=True)

    @agent.skill("scratch-learned")
    async def learned(request: MaybeHang, _tools: ToolBox) -> Done:
        if request.hang:
            await asyncio.sleep(WAIT_S * 2)
        return Done(done=True)

    @agent.skill("scratch-successor")
    async def successor(_request: Empty, _tools: ToolBox) -> Done:
        witness.times["successor_started"] = time.time()
        witness.successor_started.set()
        return Done(done=True)

    return agent


# --- the mesh -------------------------------------------------------------------------------------


def write_workflows(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        shutil.copy(repo_root() / "deploy" / "workflows" / f"{name}.yaml", directory / f"{name}.yaml")
    for name, body in WORKFLOWS.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "version": 1, **body}))


def write_delegation(path: Path) -> None:
    agents = {
        "sanctions-agent": ["sanctions-screening"],
        "bureau-agent": ["credit-file"],
        "ledger-agent": ["transaction-profile"],
        "orchestrator": ["*"],
        "sabotage-agent": ["*"],
        "recorder-agent": ["*"],
        "flaky-agent": ["*"],
    }
    path.write_text(yaml.safe_dump({"version": 1, "callers": {"orchestrator": {"agents": agents}}}))


@pytest.fixture(scope="module")
def guard_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshRunner]:
    root = tmp_path_factory.mktemp("workflow-guards")
    write_workflows(root / "workflows")
    write_delegation(root / "delegation.yaml")
    runner = MeshRunner(
        root / "state",
        port_offset=PORT_OFFSET,
        only=SERVICES,
        extra_env={
            "orchestrator": {
                "ACCORD_WORKFLOWS_DIR": str(root / "workflows"),
                "ACCORD_BREAKER_FAILURES": str(BREAKER_FAILURES),
                "ACCORD_BREAKER_OPEN_S": str(BREAKER_OPEN_S),
                "ACCORD_DEADLINE_MIN_SAMPLES": str(LEARNING_CALLS),
            },
            "gateway": {"ACCORD_GATEWAY_DELEGATION_FILE": str(root / "delegation.yaml")},
            "registry": {"ACCORD_REGISTRY_ALLOW_PRIVATE_TARGETS": "true"},
        },
    )
    runner.start(timeout_s=MESH_START_S)
    try:
        yield runner
    finally:
        runner.stop()


@dataclass
class Guards:
    mesh: MeshRunner
    witness: Witness
    agents: list[RunningAgent]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def guards(guard_mesh: MeshRunner) -> AsyncIterator[Guards]:
    witness = Witness()
    with pytest.MonkeyPatch.context() as env:
        # The test agents sign their cards as the mesh's local publisher, which its registry trusts.
        env.setenv("ACCORD_STATE_DIR", str(guard_mesh.state_dir))
        async with contextlib.AsyncExitStack() as stack:
            agents = [
                await stack.enter_async_context(
                    running_agent(
                        agent,
                        guard_mesh.url("gateway"),
                        registry_url=guard_mesh.url("registry"),
                        state_dir=guard_mesh.state_dir / "test-agents",
                    )
                )
                for agent in (sabotage_agent(witness), recorder_agent(witness), flaky_agent(witness))
            ]
            async with asyncio.timeout(WAIT_S):
                await asyncio.gather(*(a.app.state.registration.wait() for a in agents))
            yield Guards(guard_mesh, witness, agents)


async def start(mesh: MeshRunner, workflow: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=mesh.url("orchestrator"), auth=mesh.operator_auth(), timeout=WAIT_S + 10
    ) as http:
        response = await http.post(f"/v1/workflows/{workflow}/runs", params={"wait": WAIT_S}, json=body)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def run_spans(mesh: MeshRunner, run_id: str, name: str, count: int) -> list[StoredSpan]:
    """The run's spans once `count` spans named `name` are flushed."""
    reader = SpanReader(mesh.state_dir)
    deadline = time.monotonic() + WAIT_S
    while True:
        spans = [s for t in await reader.trace_ids_for_run(run_id) for s in await reader.trace(t)]
        if sum(1 for s in spans if s.name == name and s.service == "orchestrator") >= count:
            return spans
        assert time.monotonic() < deadline, [s.name for s in spans]
        await asyncio.sleep(0.2)


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in run["steps"]}


# --- contracts ------------------------------------------------------------------------------------


async def test_schema_violating_output_fails_the_step_after_one_retry_and_reaches_no_other_agent(
    guards: Guards,
) -> None:
    before = guards.witness.classified
    run = await start(guards.mesh, "contract-guard", {"ticket_id": "TKT-1"})
    steps = steps_of(run)
    classify = steps["classify"]
    assert (classify["status"], classify["error"]["reason"]) == ("failed", "contract_violation")
    assert classify["output"] is None
    assert [(a["agent"], a["try"], a.get("error")) for a in classify["attempts"]] == [
        ("sabotage-agent", 1, "contract_violation"),
        ("sabotage-agent", 2, "contract_violation"),
    ]
    assert guards.witness.classified - before == 2, "retried exactly once"
    # The retry is on the trace too: `accord trace` counts it, with why.
    summary = summarize(SpanTree(await run_spans(guards.mesh, run["id"], "invoke_agent sabotage-agent", 2)))
    assert summary["agents"]["sabotage-agent"]["retries"] == 1
    assert summary["totals"]["retries"] == 1
    assert (steps["act"]["status"], steps["act"]["skipped"]["reason"]) == ("skipped", "dependency_failed")
    assert steps["sibling"]["status"] == "completed"
    # The recorder was called for the sibling only: nothing derived from the bad output reached it.
    assert [r for r in guards.witness.received if r["note"] == "act"] == []
    assert {"note": "sibling"} in guards.witness.received
    assert all("sabotage" not in str(r) for r in guards.witness.received)
    assert "sabotage" not in str(run["result"])
    retries = [n for n in run["rationale"] if n["kind"] == "retry"]
    assert [(n["step"], n["reason"]) for n in retries] == [("classify", "contract_violation")]


# --- conflicts ------------------------------------------------------------------------------------

ADDRESS_CONFLICT = {"applicant_id": "APP-0005", "account_id": "ACC-100035"}


async def test_facts_no_rule_can_reconcile_wait_for_review_and_the_reviewers_choice_is_recorded(
    guards: Guards,
) -> None:
    run = await start(guards.mesh, "address-review", ADDRESS_CONFLICT)
    assert run["status"] == "waiting_review", run
    assert (run["review"]["reason"], run["review"]["facts"]) == ("unresolved_conflict", ["address"])
    assert run["result"] is None, "nothing is decided on a guess"
    [conflict] = run["conflicts"]
    assert (conflict["status"], conflict["rules_tried"][0]["rule"]) == ("unresolved", "prefer_specialist")
    assert conflict["rules_tried"][0]["applies"] is False
    async with httpx.AsyncClient(
        base_url=guards.mesh.url("orchestrator"), auth=guards.mesh.operator_auth(), timeout=WAIT_S + 10
    ) as http:
        refused = await http.post(f"/v1/runs/{run['id']}/review", json={"decision": "accept"})
        assert (refused.status_code, refused.json()["error"]["reason"]) == (422, "invalid_input")
        chosen = {"decision": "accept", "facts": {"address": "ledger"}, "note": "customer confirmed the move"}
        assert (await http.post(f"/v1/runs/{run['id']}/review", json=chosen)).status_code == 202
        done = (await http.get(f"/v1/runs/{run['id']}", params={"wait": WAIT_S})).json()
    assert done["status"] == "completed", done
    [settled] = done["conflicts"]
    assert (settled["status"], settled["rule"], settled["chosen"]) == ("resolved", "human_review", "ledger")
    assert done["result"]["facts"]["address"] == steps_of(done)["ledger"]["output"]["address"]


async def test_the_same_disagreement_is_settled_by_the_shipped_rule_without_a_human(guards: Guards) -> None:
    run = await start(
        guards.mesh, "credit-risk", {**ADDRESS_CONFLICT, "name": "Test", "requested_amount": 1000}
    )
    # Settled without review; the address mismatch makes the decision a refer, which waits for approval.
    assert run["status"] == "waiting_approval"
    assert [(c["fact"], c["rule"], c["chosen"]) for c in run["conflicts"]] == [
        ("address", "prefer_real_time", "ledger")
    ]


# --- dataflow -------------------------------------------------------------------------------------


async def test_a_fast_branchs_successor_starts_before_its_slow_sibling_finishes(guards: Guards) -> None:
    guards.witness.successor_started.clear()
    run = await start(guards.mesh, "fast-and-slow", {})
    assert run["status"] == "completed", run
    times = guards.witness.times
    assert times["successor_started"] < times["slow_finished"]
    steps = steps_of(run)
    assert steps["after_fast"]["started_at"] < steps["slow"]["finished_at"]
    assert steps["slow"]["finished_at"] - steps["slow"]["started_at"] < WAIT_S / 3, "it did not wait it out"


# --- hierarchical ---------------------------------------------------------------------------------

PRIMARY = {"applicant_id": "APP-0008", "account_id": "ACC-100056", "name": "Primary Applicant"}


async def test_a_step_served_by_an_orchestrator_runs_a_whole_workflow_one_delegation_deeper(
    guards: Guards,
) -> None:
    body = {
        "primary": PRIMARY,
        "co_applicant": {"applicant_id": "APP-0006", "account_id": "ACC-100042", "name": "Co Applicant"},
        "requested_amount": 4000,
    }
    run = await start(guards.mesh, "joint-credit-risk", body)
    assert run["status"] == "completed", run
    steps = steps_of(run)
    assert {steps[role]["agent"] for role in ("primary", "co_applicant")} == {"orchestrator"}
    decisions = {a["role"]: a["decision"] for a in run["result"]["applicants"]}
    assert run["result"]["decision"] == max(
        decisions.values(), key={"approve": 0, "refer": 1, "decline": 2}.__getitem__
    )
    async with httpx.AsyncClient(
        base_url=guards.mesh.url("orchestrator"), auth=guards.mesh.operator_auth(), timeout=WAIT_S
    ) as http:
        for role in ("primary", "co_applicant"):
            child_id = steps[role]["output"]["run_id"]
            child = (await http.get(f"/v1/runs/{child_id}")).json()
            assert (child["workflow"], child["status"], child["delegation_depth"]) == (
                "credit-risk",
                "completed",
                1,
            )
            assert child["result"]["decision"] == decisions[role]
    assert run["delegation_depth"] == 0


# --- timeouts and circuit breakers ----------------------------------------------------------------


async def test_a_hanging_agent_is_timed_out_and_its_task_cancelled_while_the_run_goes_on(
    guards: Guards,
) -> None:
    run = await start(guards.mesh, "hang-guard", {})
    steps = steps_of(run)
    assert (steps["hang"]["status"], steps["hang"]["error"]["reason"]) == ("failed", "timeout")
    assert steps["hang"]["attempts"][-1]["outcome"] == "timed_out"
    assert steps["fine"]["status"] == "completed"
    # The agent's skill was stopped by the cancel, not left running until its own end.
    async with asyncio.timeout(5):
        await guards.witness.hang_cancelled.wait()


async def test_a_step_without_a_timeout_is_held_to_a_deadline_learned_from_its_agent(guards: Guards) -> None:
    first = await start(guards.mesh, "learned-deadline", {"hang": False})
    attempt = steps_of(first)["work"]["attempts"][-1]
    assert (attempt["deadline"], attempt["deadline_s"]) == ("default", DEFAULT_STEP_TIMEOUT_S)
    for _ in range(LEARNING_CALLS - 1):
        assert (await start(guards.mesh, "learned-deadline", {"hang": False}))["status"] == "completed"

    started = time.monotonic()
    hung = await start(guards.mesh, "learned-deadline", {"hang": True})
    took = time.monotonic() - started

    work = steps_of(hung)["work"]
    assert (work["status"], work["error"]["reason"]) == ("failed", "timeout")
    attempt = work["attempts"][-1]
    assert (attempt["deadline"], attempt["outcome"]) == ("observed", "timed_out")
    # Four times the p95 of calls that took tens of milliseconds: the floor, or a little above it on a
    # busy machine, and far below the default.
    assert DEADLINE_FLOOR_S <= attempt["deadline_s"] < DEFAULT_STEP_TIMEOUT_S / 3
    assert took < DEFAULT_STEP_TIMEOUT_S / 2, "timed out long before the default deadline"


async def test_an_agent_that_keeps_failing_is_taken_out_of_rotation_then_probed(guards: Guards) -> None:
    witness = guards.witness
    calls = witness.failing_calls
    for _ in range(BREAKER_FAILURES):
        run = await start(guards.mesh, "breaker-guard", {})
        assert steps_of(run)["flaky"]["error"]["reason"] == "agent_failed"
        assert steps_of(run)["fine"]["status"] == "completed"  # the run degrades, it does not stop
    assert witness.failing_calls == calls + BREAKER_FAILURES

    opened = await start(guards.mesh, "breaker-guard", {})
    flaky = steps_of(opened)["flaky"]
    assert (flaky["status"], flaky["error"]["reason"]) == ("failed", "agent_unavailable")
    assert flaky["attempts"][0]["outcome"] == "circuit_open"
    assert witness.failing_calls == calls + BREAKER_FAILURES, "an open breaker sends the agent nothing"
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(guards.mesh.url("orchestrator") + "/metrics")).text
    assert (
        'accord_circuit_breaker_state{agent="flaky-agent",service="orchestrator",state="open"} 1.0' in metrics
    )

    await asyncio.sleep(BREAKER_OPEN_S + 0.5)
    await start(guards.mesh, "breaker-guard", {})  # half open: one probe goes through, fails, reopens
    assert witness.failing_calls == calls + BREAKER_FAILURES + 1
    await start(guards.mesh, "breaker-guard", {})
    assert witness.failing_calls == calls + BREAKER_FAILURES + 1
