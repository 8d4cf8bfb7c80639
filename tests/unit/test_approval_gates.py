"""Human approval gates around the engine and the run service (real SQLite; the engine tests' stand-in
agents): gates on parallel branches resolve independently, a gate after synthesis holds the result, every
decision records who and why, an unanswered gate takes the workflow's outcome, gates survive a restart,
and a bad decision is refused and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accord.audit import AuditLog
from accord.errors import AccordError
from accord.storage import create_engine
from orchestrator.run_store import RunStore
from orchestrator.runs import RunService
from orchestrator.workflows import WorkflowSpec
from tests.stand_in_dispatcher import StandInDispatcher, answer

WAIT_S = 10.0


def branches() -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "gated",
            "version": 1,
            "description": "two branches, each held for approval",
            "input_schema": {"type": "object"},
            "steps": [
                {"id": "a", "skill": "work"},
                {"id": "b", "skill": "work"},
                {"id": "a2", "skill": "work", "input": {"v": "$steps.a.v"}},
                {"id": "b2", "skill": "work", "input": {"v": "$steps.b.v"}},
            ],
            "approvals": [{"id": "ga", "after": "a"}, {"id": "gb", "after": "b"}],
            "synthesis": "collect",
        }
    )


def result_gate(expires_after_s: float = 3600, on_expiry: str = "reject") -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "gated",
            "version": 1,
            "description": "a result held when it says refer",
            "input_schema": {"type": "object"},
            "steps": [{"id": "decide", "skill": "decide"}],
            "approvals": [
                {
                    "id": "refer",
                    "after": "synthesis",
                    "when": {"field": "outputs.decide.decision", "equals": "refer"},
                    "expires_after_s": expires_after_s,
                    "on_expiry": on_expiry,
                }
            ],
            "synthesis": "collect",
        }
    )


class World:
    def __init__(self, tmp_path: Path, spec: WorkflowSpec, dispatcher: StandInDispatcher) -> None:
        self.engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}")
        self.spec, self.dispatcher = spec, dispatcher
        self.audit = AuditLog(self.engine, "orchestrator")

    async def service(self) -> RunService:
        store = RunStore(self.engine)
        await store.initialize()
        await self.audit.initialize()
        return RunService({self.spec.name: self.spec}, self.dispatcher, store, self.audit)

    async def approvals(self, run_id: str) -> list[dict[str, Any]]:
        return [r for r in await self.audit.records(run_id) if r["action"] == "run.approval"]


def statuses(run: dict[str, Any]) -> dict[str, str]:
    return {step["id"]: step["status"] for step in run["steps"]}


async def test_gates_on_parallel_branches_resolve_independently(tmp_path: Path) -> None:
    world = World(tmp_path, branches(), StandInDispatcher({"work": answer({"v": 1})}))
    runs = await world.service()

    run = await runs.run(world.spec, {}, "test")
    assert run["status"] == "waiting_approval"
    assert statuses(run) == {
        "a": "waiting_approval",
        "b": "waiting_approval",
        "a2": "blocked",
        "b2": "blocked",
    }
    assert {g["status"] for g in run["approvals"].values()} == {"pending"}

    await runs.decide(run["id"], "ga", "approve", "looks right", "rest:alice")
    run = await runs.wait(run["id"], WAIT_S)
    assert run["status"] == "waiting_approval"
    assert statuses(run) == {"a": "completed", "b": "waiting_approval", "a2": "completed", "b2": "blocked"}

    await runs.decide(run["id"], "gb", "reject", "b is wrong", "rest:bob")
    run = await runs.wait(run["id"], WAIT_S)
    assert run["status"] == "completed"
    assert statuses(run) == {"a": "completed", "b": "failed", "a2": "completed", "b2": "skipped"}
    assert run["steps"][1]["error"]["reason"] == "approval_rejected"
    decided = {g["gate"]: (g["status"], g["decided_by"], g["reason"]) for g in run["approvals"].values()}
    assert decided == {
        "ga": ("approved", "rest:alice", "looks right"),
        "gb": ("rejected", "rest:bob", "b is wrong"),
    }
    audited = [(r["actor"], r["outcome"], r["details"]["gate"]) for r in await world.approvals(run["id"])]
    assert audited == [("rest:alice", "approved", "ga"), ("rest:bob", "rejected", "gb")]


@pytest.mark.parametrize(("decision", "status"), [("approve", "completed"), ("reject", "failed")])
async def test_a_gate_after_synthesis_holds_the_result_until_a_person_decides(
    tmp_path: Path, decision: str, status: str
) -> None:
    world = World(tmp_path, result_gate(), StandInDispatcher({"decide": answer({"decision": "refer"})}))
    runs = await world.service()

    run = await runs.run(world.spec, {}, "test")
    assert (run["status"], run["result"]["outputs"]["decide"]["decision"]) == ("waiting_approval", "refer")

    run = await runs.decide(run["id"], "refer", decision, "checked by hand", "rest:carol")
    assert run["status"] == status
    assert run["result"]["outputs"]["decide"]["decision"] == "refer"
    if decision == "reject":
        assert run["error"]["reason"] == "approval_rejected"


async def test_no_gate_when_its_condition_does_not_hold(tmp_path: Path) -> None:
    world = World(tmp_path, result_gate(), StandInDispatcher({"decide": answer({"decision": "approve"})}))
    run = await (await world.service()).run(world.spec, {}, "test")
    assert (run["status"], run["approvals"]) == ("completed", {})


@pytest.mark.parametrize(("on_expiry", "status"), [("approve", "completed"), ("reject", "failed")])
async def test_an_unanswered_gate_takes_the_outcome_the_workflow_names(
    tmp_path: Path, on_expiry: str, status: str
) -> None:
    spec = result_gate(expires_after_s=60, on_expiry=on_expiry)
    world = World(tmp_path, spec, StandInDispatcher({"decide": answer({"decision": "refer"})}))
    runs = await world.service()
    run = await runs.run(world.spec, {}, "test")

    assert await runs.expire_approvals() == []  # not yet
    expired = await runs.expire_approvals(now=run["approvals"]["refer"]["expires_at"] + 1)

    assert expired == [(run["id"], "refer")]
    run = await runs.get(run["id"])
    assert run["status"] == status
    assert run["approvals"]["refer"]["decided_by"] == "expiry"


async def test_gates_survive_a_restart(tmp_path: Path) -> None:
    world = World(tmp_path, branches(), StandInDispatcher({"work": answer({"v": 1})}))
    run = await (await world.service()).run(world.spec, {}, "test")

    restarted = await world.service()  # a new process, the same store
    await restarted.decide(run["id"], "ga", "approve", "fine", "rest:alice")
    await restarted.decide(
        (await restarted.wait(run["id"], WAIT_S))["id"], "gb", "approve", "fine", "rest:alice"
    )
    run = await restarted.wait(run["id"], WAIT_S)

    assert run["status"] == "completed"
    assert [call.task for call in world.dispatcher.calls].count("a") == 1, "a held step is never sent again"


@pytest.mark.parametrize(
    ("gate", "decision", "reason", "refusal"),
    [
        ("nope", "approve", "why", "approval_not_pending"),
        ("ga", "maybe", "why", "invalid_input"),
        ("ga", "approve", "  ", "invalid_input"),
        ("ga", "approve", "x" * 501, "invalid_input"),
    ],
)
async def test_a_bad_decision_is_refused_and_changes_nothing(
    tmp_path: Path, gate: str, decision: str, reason: str, refusal: str
) -> None:
    world = World(tmp_path, branches(), StandInDispatcher({"work": answer({"v": 1})}))
    runs = await world.service()
    run = await runs.run(world.spec, {}, "test")

    with pytest.raises(AccordError) as refused:
        await runs.decide(run["id"], gate, decision, reason, "rest:mallory")

    assert refused.value.reason == refusal
    assert await runs.get(run["id"]) == run
    [record] = await world.approvals(run["id"])  # the refusal, on the record
    assert (record["actor"], record["outcome"], record["reason"]) == ("rest:mallory", "denied", refusal)
