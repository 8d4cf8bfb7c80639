"""Run budgets around the engine and the run service: the tasks limit caps a fan-out before dispatch, the
wall-time limit cancels what is under way, a request may tighten a workflow's limits but never loosen
them, and a stopped run records what it spent and is audited. Real SQLite; the agents are the engine
tests' in-process stand-in (through real processes: `tests/integration/test_durable_runs.py`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from accord.audit import AuditLog
from accord.errors import AccordError
from accord.storage import create_engine
from accord.usage import ModelUsage, Usage
from orchestrator.budgets import BudgetExceeded, RunBudget, budget_from_header, budget_from_object
from orchestrator.run_store import RunStore
from orchestrator.runs import RunService
from orchestrator.workflows import BudgetSpec, WorkflowSpec
from tests.stand_in_dispatcher import StandInDispatcher, answer

WAIT_S = 10.0


def fan_out(width: int, budget: dict[str, Any] | None = None) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "wide",
            "version": 1,
            "description": f"{width} parallel steps",
            "input_schema": {"type": "object"},
            "steps": [{"id": f"s{i}", "skill": "work"} for i in range(width)],
            "budget": budget or {},
            "synthesis": "collect",
        }
    )


def one_step(budget: dict[str, Any], retries: int) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "wide",
            "version": 1,
            "description": "one step, retried",
            "input_schema": {"type": "object"},
            "steps": [{"id": "only", "skill": "work", "retries": retries}],
            "budget": budget,
            "synthesis": "collect",
        }
    )


async def service(
    tmp_path: Path, spec: WorkflowSpec, dispatcher: StandInDispatcher
) -> tuple[RunService, AuditLog]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}")
    store, audit = RunStore(engine), AuditLog(engine, "orchestrator")
    await store.initialize()
    await audit.initialize()
    return RunService({spec.name: spec}, dispatcher, store, audit), audit


def test_a_request_tightens_a_budget_and_never_loosens_it() -> None:
    workflow = BudgetSpec(tasks=10)
    assert workflow.tightened(BudgetSpec(tasks=50)).tasks == 10
    assert workflow.tightened(BudgetSpec(tasks=5, wall_s=3)) == BudgetSpec(tasks=5, wall_s=3)
    assert workflow.tightened(None) == workflow
    assert BudgetSpec().tightened(BudgetSpec(wall_s=2.5)).wall_s == 2.5


def test_budget_requests_are_parsed_strictly() -> None:
    assert budget_from_header("tasks=50, wall_s=2.5") == BudgetSpec(tasks=50, wall_s=2.5)
    assert budget_from_header(None) is None
    assert budget_from_object({"tasks": 3.0}) == BudgetSpec(tasks=3)
    for bad in ("tasks", "tasks=-1", "tasks=0", "dollars=5", "tokens=1.5", "tasks=1; wall_s=2", "x" * 300):
        with pytest.raises(AccordError) as refused:
            budget_from_header(bad)
        assert refused.value.reason == "invalid_input", bad
    assert budget_from_header("tokens=2000, cost=0.25, depth=1") == BudgetSpec(
        tokens=2000, cost=0.25, depth=1
    )
    assert budget_from_object({"tokens": 2000.0, "depth": 0.0}) == BudgetSpec(tokens=2000, depth=0)
    for bad_object in ([1], {"tasks": "many"}, {"tasks": 1.5}, {"unknown": 1}, {"depth": -1}, {"cost": -0.1}):
        with pytest.raises(AccordError):
            budget_from_object(bad_object)


async def test_a_fan_out_of_a_thousand_under_a_budget_of_fifty_sends_at_most_fifty(tmp_path: Path) -> None:
    dispatcher = StandInDispatcher({"work": answer({"v": 1}, delay_s=0.01)})
    spec = fan_out(1000, {"tasks": 50})
    runs, audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert len(dispatcher.calls) <= 50
    assert run["status"] == "budget_exceeded"
    assert (run["error"]["reason"], run["error"]["limit"]) == ("budget_exceeded", "tasks")
    assert run["budget"]["limits"] == {"tasks": 50}
    assert run["budget"]["spent"]["tasks"] == len(dispatcher.calls)
    assert run["budget"]["exceeded"] == "tasks"
    statuses = [step["status"] for step in run["steps"]]
    assert statuses.count("skipped") >= 950
    assert all(
        step["skipped"]["reason"] == "budget_exceeded" for step in run["steps"] if step["status"] == "skipped"
    )
    assert any(note["kind"] == "budget" for note in run["rationale"])
    [stop] = [r for r in await audit.records(run["id"]) if r["action"] == "run.budget_stop"]
    assert (stop["outcome"], stop["reason"]) == ("budget_exceeded", "budget_exceeded")
    assert stop["details"]["spent"]["tasks"] == len(dispatcher.calls)


async def test_a_request_budget_below_the_workflows_stops_the_run_sooner(tmp_path: Path) -> None:
    dispatcher = StandInDispatcher({"work": answer({"v": 1})})
    spec = fan_out(30, {"tasks": 20})
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test", budget=BudgetSpec(tasks=4))

    assert len(dispatcher.calls) == 4
    assert run["budget"]["limits"] == {"tasks": 4}


async def test_a_run_within_its_budget_completes_and_records_what_it_spent(tmp_path: Path) -> None:
    dispatcher = StandInDispatcher({"work": answer({"v": 1})})
    spec = fan_out(5, {"tasks": 5, "wall_s": 30})
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert run["status"] == "completed"
    assert run["budget"]["spent"]["tasks"] == 5
    assert run["budget"]["exceeded"] is None
    assert 0 <= run["budget"]["spent"]["wall_s"] < 30


async def test_when_wall_time_is_spent_the_steps_under_way_are_cancelled(tmp_path: Path) -> None:
    dispatcher = StandInDispatcher({"work": answer({"v": 1}, delay_s=WAIT_S)})
    spec = fan_out(3, {"wall_s": 0.3})
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert run["status"] == "budget_exceeded"
    assert run["error"]["limit"] == "wall_s"
    assert run["finished_at"] - run["created_at"] < WAIT_S / 2, "the slow steps were not waited for"
    for step in run["steps"]:
        assert (step["status"], step["error"]["reason"]) == ("failed", "budget_exceeded")
        assert step["error"]["message"].startswith("cancelled")


async def test_retries_count_against_the_tasks_budget(tmp_path: Path) -> None:
    async def flaky(_data: dict[str, Any]) -> dict[str, Any]:
        raise AccordError("agent_unavailable", "down")

    dispatcher = StandInDispatcher({"work": flaky})
    spec = one_step({"tasks": 3}, retries=5)
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert len(dispatcher.calls) == 3
    assert (run["status"], run["budget"]["spent"]["tasks"]) == ("budget_exceeded", 3)


async def test_a_tool_call_the_gateway_refused_for_the_budget_stops_the_run_without_retrying(
    tmp_path: Path,
) -> None:
    async def over_budget(_data: dict[str, Any]) -> dict[str, Any]:
        # As the dispatcher reports an SDK agent's failure when the gateway refused its tool call.
        raise AccordError(
            "agent_failed", "agent failed the step", agent_reason="budget_exceeded", agent_limit="tool_calls"
        )

    dispatcher = StandInDispatcher({"work": over_budget})
    spec = one_step({"tool_calls": 2}, retries=3)
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert len(dispatcher.calls) == 1
    assert (run["status"], run["error"]["limit"], run["budget"]["exceeded"]) == (
        "budget_exceeded",
        "tool_calls",
        "tool_calls",
    )


async def test_a_request_deeper_than_its_budget_allows_is_refused_audited_and_starts_nothing(
    tmp_path: Path,
) -> None:
    dispatcher = StandInDispatcher({"work": answer({"v": 1})})
    spec = fan_out(2, {"depth": 2})
    runs, audit = await service(tmp_path, spec, dispatcher)

    with pytest.raises(AccordError) as refused:
        await runs.admit("wide", {}, "a2a:orchestrator", depth=1, budget=BudgetSpec(depth=0))
    with pytest.raises(AccordError) as too_deep_for_the_workflow:
        await runs.admit("wide", {}, "a2a:orchestrator", depth=3)

    assert refused.value.reason == too_deep_for_the_workflow.value.reason == "delegation_depth_exceeded"
    assert "at most 0" in refused.value.detail
    denied = [r for r in await audit.records() if r["action"] == "run.start"]
    assert [(r["outcome"], r["reason"]) for r in denied] == [("denied", "delegation_depth_exceeded")] * 2
    assert dispatcher.calls == []


async def test_every_step_carries_the_runs_depth_limit_and_an_even_share_of_its_tokens(
    tmp_path: Path,
) -> None:
    spec = fan_out(4, {"tokens": 1000, "depth": 1})
    # Slow enough that all four are under way together, each holding its share.
    dispatcher = StandInDispatcher({"work": answer({"v": 1}, delay_s=0.05)})
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    seen = dispatcher.steps
    assert run["status"] == "completed"
    assert {step.depth_limit for step in seen} == {1}
    # Nothing is reported, so each share is what is left unreserved over the steps still to be sent.
    assert sorted(step.token_allowance or 0 for step in seen) == [250] * 4
    assert run["budget"]["spent"]["tokens"] == 0


def test_a_run_budget_shares_out_its_tokens_and_trips_on_tokens_or_cost() -> None:
    budget = RunBudget(BudgetSpec(tokens=900, cost=0.01), started_at=0.0)
    assert budget.reserve_tokens("a", 3) == 300
    assert budget.reserve_tokens("b", 2) == 300
    assert budget.reserve_tokens("c", 1) == 300
    budget.charge("a", Usage({"m": ModelUsage(100, 50)}), 0.001)  # 150 spent, 150 of a's share back
    assert budget.reserve_tokens("d", 1) == 150
    budget.release("b")
    budget.release("c")
    budget.release("d")
    with pytest.raises(BudgetExceeded) as tokens:
        budget.charge("e", Usage({"m": ModelUsage(700, 100)}), 0.001)
    assert (tokens.value.limit, budget.exceeded) == ("tokens", "tokens")
    with pytest.raises(BudgetExceeded):
        budget.reserve_task()  # nothing more starts once the tokens are spent
    record = budget.record()
    assert record["spent"] | {"wall_s": 0} == {
        "tasks": 0,
        "wall_s": 0,
        "input_tokens": 800,
        "output_tokens": 150,
        "tokens": 950,
        "cost": 0.002,
    }
    again = RunBudget.from_record(record, started_at=0.0)
    assert (again.tokens, again.cost, again.exceeded) == (950, 0.002, "tokens")

    dear = RunBudget(BudgetSpec(cost=0.001), started_at=0.0)
    assert dear.reserve_tokens("a", 1) is None  # no token limit: no allowance is set
    with pytest.raises(BudgetExceeded) as cost:
        dear.charge("a", Usage({"m": ModelUsage(1, 1)}), 0.0011)
    assert cost.value.limit == "cost"


async def test_a_step_that_needs_more_than_its_share_fails_and_the_run_goes_on_until_its_total_is_spent(
    tmp_path: Path,
) -> None:
    async def work(data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # both under way together, each holding its share of 500
        if data["i"] == 0:
            usage = {"models": {"m": {"input_tokens": 600, "output_tokens": 0}}}
            raise AccordError(
                "agent_failed",
                "over its share",
                agent_reason="budget_exceeded",
                agent_limit="tokens",
                usage=usage,
            )
        return {"v": 1}

    spec = WorkflowSpec.model_validate(
        {
            "name": "wide",
            "version": 1,
            "description": "two steps sharing 1,000 tokens",
            "input_schema": {"type": "object"},
            "steps": [{"id": f"s{i}", "skill": "work", "input": {"i": i}} for i in range(2)],
            "budget": {"tokens": 1000},
            "synthesis": "collect",
        }
    )
    runs, _audit = await service(tmp_path, spec, StandInDispatcher({"work": work}))

    run = await runs.run(spec, {}, "test")

    steps = {step["id"]: step for step in run["steps"]}
    assert (steps["s0"]["status"], steps["s0"]["error"]["reason"]) == ("failed", "budget_exceeded")
    assert steps["s1"]["status"] == "completed"
    assert run["status"] != "budget_exceeded", "600 of 1,000 tokens: the run's own budget is not spent"
    assert (run["budget"]["spent"]["tokens"], run["budget"]["exceeded"]) == (600, None)


async def test_the_tokens_are_shared_among_no_more_steps_than_the_tasks_budget_lets_run(
    tmp_path: Path,
) -> None:
    spec = fan_out(100, {"tokens": 1000, "tasks": 4})
    dispatcher = StandInDispatcher({"work": answer({"v": 1}, delay_s=0.05)})
    runs, _audit = await service(tmp_path, spec, dispatcher)

    run = await runs.run(spec, {}, "test")

    assert (run["status"], run["error"]["limit"]) == ("budget_exceeded", "tasks")
    # Four steps can be sent, so four share the tokens (not a hundred, which would leave each 10).
    assert sorted(step.token_allowance or 0 for step in dispatcher.steps) == [250] * 4
