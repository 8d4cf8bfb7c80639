"""The workflow engine's scheduling logic, with an in-process dispatcher standing in for agents.

Only the engine's own decisions are tested here (dataflow order, routes, retries, contracts, confidence
gates, critic loops); the same patterns run through real processes in `tests/integration/test_workflow_*`.
The stand-in for agents is `tests.stand_in_dispatcher`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from accord.errors import AccordError
from orchestrator.engine import Execution, StepRecord
from orchestrator.workflows import WorkflowSpec
from tests.stand_in_dispatcher import (
    Handler,
    StandInDispatcher,
    answer,
)

WAIT_S = 5.0


def workflow(steps: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "w",
            "version": 1,
            "description": "d",
            "input_schema": {"type": "object"},
            "steps": steps,
            "synthesis": "credit-risk",
            **extra,
        }
    )


@dataclass
class Ran:
    records: dict[str, StepRecord]
    rationale: list[dict[str, Any]]
    events: list[tuple[str, str]]

    def status(self, step: str) -> str:
        return self.records[step].status

    def kinds(self, step: str) -> list[str]:
        return [note["kind"] for note in self.rationale if note["step"] == step]


async def execute(spec: WorkflowSpec, dispatcher: StandInDispatcher, run_input: dict[str, Any]) -> Ran:
    events: list[tuple[str, str]] = []

    async def listener(record: StepRecord) -> None:
        events.append((record.id, record.status))

    execution = Execution("run-1", spec, run_input, dispatcher, listener)
    async with asyncio.timeout(WAIT_S):
        await execution.run()
    return Ran(execution.records, execution.rationale, events)


# --- dataflow scheduling --------------------------------------------------------------------------------


async def test_a_fast_branchs_successor_starts_before_its_slow_sibling_finishes() -> None:
    successor_started = asyncio.Event()

    async def slow(_data: dict[str, Any]) -> dict[str, Any]:
        # Finishes only once the fast branch's successor has started: a scheduler that waited for all
        # siblings would never get there (and the run would time out).
        async with asyncio.timeout(WAIT_S):
            await successor_started.wait()
        return {"v": "slow"}

    async def successor(data: dict[str, Any]) -> dict[str, Any]:
        successor_started.set()
        return {"v": f"after {data['x']}"}

    spec = workflow(
        [
            {"id": "fast", "skill": "fast"},
            {"id": "slow", "skill": "slow"},
            {"id": "next", "skill": "next", "input": {"x": "$steps.fast.v"}},
        ]
    )
    dispatcher = StandInDispatcher({"fast": answer({"v": "fast"}), "slow": slow, "next": successor})
    ran = await execute(spec, dispatcher, {})
    assert {ran.status(s) for s in ("fast", "slow", "next")} == {"completed"}
    [next_call], [slow_call] = dispatcher.called("next"), dispatcher.called("slow")
    assert slow_call.finished is not None
    assert next_call.started < slow_call.finished
    assert next_call.data == {"x": "fast"}


async def test_steps_without_inputs_from_each_other_are_dispatched_together() -> None:
    spec = workflow([{"id": f"s{i}", "skill": "work"} for i in range(20)])
    dispatcher = StandInDispatcher({"work": answer({"ok": True}, delay_s=0.05)})
    await execute(spec, dispatcher, {})
    starts = [call.started for call in dispatcher.calls]
    finishes = [call.finished or 0 for call in dispatcher.calls]
    assert len(starts) == 20
    assert max(starts) < min(finishes), "every step started before any finished"


async def test_a_failed_step_skips_its_dependents_without_dispatching_them() -> None:
    async def broken(_data: dict[str, Any]) -> dict[str, Any]:
        raise AccordError("agent_failed", "agent a failed the step (not_found)", agent_reason="not_found")

    spec = workflow([{"id": "a", "skill": "a"}, {"id": "b", "skill": "b", "input": {"v": "$steps.a.v"}}])
    dispatcher = StandInDispatcher({"a": broken, "b": answer({})})
    ran = await execute(spec, dispatcher, {})
    assert ran.records["a"].error == {
        "reason": "agent_failed",
        "message": "agent a failed the step (not_found)",
    }
    assert (ran.status("b"), ran.records["b"].skipped) == (
        "skipped",
        {"reason": "dependency_failed", "detail": "a failed"},
    )
    assert dispatcher.called("b") == []


# --- router ---------------------------------------------------------------------------------------------

ROUTED = [
    {
        "id": "triage",
        "skill": "triage",
        "route": {
            "field": "category",
            "branches": {"network": ["network"], "billing": ["billing", "refund"]},
        },
    },
    {"id": "network", "skill": "network", "input": {"c": "$steps.triage.customer"}},
    {"id": "billing", "skill": "billing", "input": {"c": "$steps.triage.customer"}},
    {"id": "refund", "skill": "refund", "input": {"r": "$steps.billing.amount"}},
    {"id": "notify", "skill": "notify", "input": {"r": "$steps.refund.amount"}},
]


async def test_the_router_runs_only_the_selected_branch_and_records_the_others_as_skipped() -> None:
    dispatcher = StandInDispatcher(
        {
            "triage": answer({"category": "network", "customer": "C-1"}),
            "network": answer({"fixed": True}),
            "billing": answer({"amount": 5}),
            "refund": answer({"amount": 5}),
            "notify": answer({}),
        }
    )
    ran = await execute(workflow(ROUTED), dispatcher, {})
    assert ran.records["triage"].route == {
        "field": "category",
        "value": "network",
        "selected": ["network"],
        "not_taken": ["billing", "refund"],
    }
    assert ran.status("network") == "completed"
    for step in ("billing", "refund", "notify"):
        assert ran.status(step) == "skipped"
        assert ran.records[step].skipped is not None
        assert ran.records[step].skipped["reason"] == "branch_not_taken"
    assert [call.skill for call in dispatcher.calls] == ["triage", "network"]
    assert "route" in ran.kinds("triage")


async def test_a_branch_of_several_steps_runs_in_dataflow_order() -> None:
    dispatcher = StandInDispatcher(
        {
            "triage": answer({"category": "billing", "customer": "C-1"}),
            "network": answer({}),
            "billing": answer({"amount": 7}),
            "refund": answer({"amount": 7}),
            "notify": answer({}),
        }
    )
    ran = await execute(workflow(ROUTED), dispatcher, {})
    assert [call.skill for call in dispatcher.calls] == ["triage", "billing", "refund", "notify"]
    assert dispatcher.called("refund")[0].data == {"r": 7}
    assert ran.status("network") == "skipped"


async def test_a_route_value_no_branch_names_waits_for_a_human_and_runs_no_branch() -> None:
    dispatcher = StandInDispatcher({"triage": answer({"category": "legal", "customer": "C-1"})})
    ran = await execute(workflow(ROUTED), dispatcher, {})
    assert ran.status("triage") == "waiting_review"
    assert ran.records["triage"].review is not None
    assert ran.records["triage"].review["reason"] == "no_route"
    assert {ran.status(s) for s in ("network", "billing", "refund", "notify")} == {"blocked"}
    assert len(dispatcher.calls) == 1


# --- contracts and retries ------------------------------------------------------------------------------

CLASSIFIED = {"type": "object", "required": ["category"], "properties": {"category": {"enum": ["a", "b"]}}}


async def test_a_contract_violation_is_retried_once_then_fails_and_never_reaches_a_dependent() -> None:
    spec = workflow(
        [
            {"id": "classify", "skill": "classify"},
            {"id": "act", "skill": "act", "input": {"c": "$steps.classify"}},
        ]
    )
    dispatcher = StandInDispatcher(
        {"classify": answer({"category": "sabotage"}), "act": answer({})}, {"classify": CLASSIFIED}
    )
    ran = await execute(spec, dispatcher, {})
    record = ran.records["classify"]
    assert (record.status, record.error and record.error["reason"]) == ("failed", "contract_violation")
    assert record.output is None
    assert [a["try"] for a in record.attempts] == [1, 2]
    assert all(a["error"] == "contract_violation" for a in record.attempts)
    assert len(dispatcher.called("classify")) == 2
    assert dispatcher.called("act") == [], "the bad output reached no other step"
    assert ran.status("act") == "skipped"
    assert ran.kinds("classify").count("retry") == 1


async def test_a_contract_violation_followed_by_a_valid_answer_completes_with_the_retry_recorded() -> None:
    answers = iter([{"category": "sabotage"}, {"category": "a"}])

    async def flaky(_data: dict[str, Any]) -> dict[str, Any]:
        return next(answers)

    spec = workflow(
        [
            {"id": "classify", "skill": "classify"},
            {"id": "act", "skill": "act", "input": {"c": "$steps.classify"}},
        ]
    )
    dispatcher = StandInDispatcher({"classify": flaky, "act": answer({})}, {"classify": CLASSIFIED})
    ran = await execute(spec, dispatcher, {})
    assert ran.status("classify") == "completed"
    assert dispatcher.called("act")[0].data == {"c": {"category": "a"}}
    assert ran.kinds("classify") == ["retry", "agent"]


async def test_a_router_output_without_its_route_field_is_a_contract_violation() -> None:
    dispatcher = StandInDispatcher({"triage": answer({"customer": "C-1"})})
    ran = await execute(workflow(ROUTED), dispatcher, {})
    assert ran.records["triage"].error is not None
    assert ran.records["triage"].error["reason"] == "contract_violation"
    assert len(dispatcher.called("triage")) == 2


@pytest.mark.parametrize(("retries", "expected"), [(2, "completed"), (1, "failed")])
async def test_transient_failures_are_retried_as_many_times_as_the_step_allows(
    retries: int, expected: str
) -> None:
    failures = [AccordError("agent_unavailable", "agent x did not answer")] * 2

    async def unsteady(_data: dict[str, Any]) -> dict[str, Any]:
        if failures:
            raise failures.pop()
        return {"ok": True}

    ran = await execute(
        workflow([{"id": "s", "skill": "s", "retries": retries}]), StandInDispatcher({"s": unsteady}), {}
    )
    assert ran.status("s") == expected
    assert ran.kinds("s").count("retry") == retries


async def test_an_agent_refusing_the_request_is_not_retried() -> None:
    async def refuses(_data: dict[str, Any]) -> dict[str, Any]:
        raise AccordError(
            "agent_failed", "agent s failed the step (invalid_input)", agent_reason="invalid_input"
        )

    dispatcher = StandInDispatcher({"s": refuses})
    ran = await execute(workflow([{"id": "s", "skill": "s", "retries": 3}]), dispatcher, {})
    assert ran.status("s") == "failed"
    assert len(dispatcher.calls) == 1


async def test_a_step_that_outlives_its_timeout_fails_with_timeout() -> None:
    never = asyncio.Event()

    async def hangs(_data: dict[str, Any]) -> dict[str, Any]:
        await never.wait()
        return {}

    ran = await execute(
        workflow([{"id": "s", "skill": "s", "timeout_s": 0.05}]), StandInDispatcher({"s": hangs}), {}
    )
    assert ran.records["s"].error is not None
    assert ran.records["s"].error["reason"] == "timeout"


# --- confidence -----------------------------------------------------------------------------------------


async def test_an_output_below_its_threshold_waits_for_review_and_blocks_its_dependents() -> None:
    spec = workflow(
        [
            {"id": "a", "skill": "a", "min_confidence": 0.6, "on_low_confidence": "review"},
            {"id": "b", "skill": "b", "input": {"v": "$steps.a.v"}},
            {"id": "c", "skill": "c"},
        ]
    )
    dispatcher = StandInDispatcher(
        {"a": answer({"v": 1, "confidence": 0.4}), "b": answer({}), "c": answer({"confidence": 0.1})}
    )
    ran = await execute(spec, dispatcher, {})
    assert ran.status("a") == "waiting_review"
    assert ran.records["a"].review is not None
    assert ran.records["a"].review["reason"] == "low_confidence"
    assert ran.records["a"].output == {"v": 1, "confidence": 0.4}, "kept for the reviewer"
    assert (ran.status("b"), ran.records["b"].blocked_by) == ("blocked", "a")
    assert ran.status("c") == "completed", "a step with no threshold is not gated"
    assert dispatcher.called("b") == []


async def test_an_output_below_its_threshold_can_fail_the_step_instead() -> None:
    spec = workflow([{"id": "a", "skill": "a", "min_confidence": 0.6, "on_low_confidence": "fail"}])
    ran = await execute(spec, StandInDispatcher({"a": answer({"confidence": 0.59})}), {})
    assert ran.records["a"].error is not None
    assert ran.records["a"].error["reason"] == "low_confidence"


async def test_a_gated_output_without_a_confidence_is_a_contract_violation() -> None:
    spec = workflow([{"id": "a", "skill": "a", "min_confidence": 0.6}])
    ran = await execute(spec, StandInDispatcher({"a": answer({"v": 1})}), {})
    assert ran.records["a"].error is not None
    assert ran.records["a"].error["reason"] == "contract_violation"


# --- critic-refiner loop --------------------------------------------------------------------------------


def critic_step(max_iterations: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": "memo",
        "skill": "draft",
        "input": {"topic": "$input.topic"},
        "critic": {
            "skill": "review",
            "input": {"text": "$draft.text", "round": "$loop.iteration"},
            "accept": [{"field": "passed", "equals": True}, {"field": "score", "at_least": 0.9}],
            "max_iterations": max_iterations,
            "feedback": {"from": "findings", "keep": ["rule"]},
            "revise": {
                "feedback": "$loop.feedback",
                "previous": "$draft.text",
                "iteration": "$loop.iteration",
            },
            **extra,
        },
    }


def drafter() -> Handler:
    async def draft(data: dict[str, Any]) -> dict[str, Any]:
        fixed = len(data.get("feedback", []))
        return {"text": f"{data.get('previous', 'draft')}+{fixed}", "confidence": 0.8}

    return draft


def reviewer(scores: list[float]) -> Handler:
    async def review(_data: dict[str, Any]) -> dict[str, Any]:
        score = scores.pop(0)
        findings = (
            [] if score >= 0.9 else [{"rule": "R1", "severity": "major"}, {"rule": "R2", "severity": "minor"}]
        )
        return {"score": score, "passed": score >= 0.9, "findings": findings}

    return review


async def test_the_critic_loop_revises_with_the_critics_feedback_until_the_workflows_threshold() -> None:
    dispatcher = StandInDispatcher({"draft": drafter(), "review": reviewer([0.5, 0.7, 0.95])})
    ran = await execute(workflow([critic_step(4)]), dispatcher, {"topic": "t"})
    record = ran.records["memo"]
    assert record.status == "completed"
    assert record.loop is not None
    assert (record.loop["state"], record.loop["iterations"]) == ("accepted", 3)
    drafts = dispatcher.called("draft")
    assert drafts[0].data == {"topic": "t"}
    assert drafts[1].data == {
        "topic": "t",
        "feedback": [{"rule": "R1"}, {"rule": "R2"}],
        "previous": "draft+0",
        "iteration": 1,
    }
    assert [call.data["text"] for call in dispatcher.called("review")] == [
        "draft+0",
        "draft+0+2",
        "draft+0+2+2",
    ]
    assert record.output == {"text": "draft+0+2+2", "confidence": 0.8}
    assert [h["accepted"] for h in record.loop["history"]] == [False, False, True]
    assert [task for task in (a["task"] for a in record.attempts)] == [
        "memo",
        "memo.review.0",
        "memo.draft.1",
        "memo.review.1",
        "memo.draft.2",
        "memo.review.2",
    ]


async def test_a_critic_loop_that_never_converges_stops_at_the_cap_with_its_last_draft() -> None:
    dispatcher = StandInDispatcher({"draft": drafter(), "review": reviewer([0.4] * 10)})
    ran = await execute(workflow([critic_step(3)]), dispatcher, {"topic": "t"})
    record = ran.records["memo"]
    assert record.status == "completed"
    assert record.loop is not None
    assert (record.loop["state"], record.loop["iterations"]) == ("max_iterations_reached", 3)
    assert record.loop["unresolved"] == [{"rule": "R1"}, {"rule": "R2"}]
    assert len(dispatcher.called("draft")) == 3
    assert len(dispatcher.called("review")) == 3
    assert record.output is not None
    assert record.output["text"] == "draft+0+2+2"


async def test_a_capped_loop_can_hand_the_last_draft_to_a_human() -> None:
    dispatcher = StandInDispatcher({"draft": drafter(), "review": reviewer([0.4] * 10)})
    ran = await execute(workflow([critic_step(2, on_max_iterations="review")]), dispatcher, {"topic": "t"})
    assert ran.status("memo") == "waiting_review"
    assert ran.records["memo"].review is not None
    assert ran.records["memo"].review["reason"] == "max_iterations_reached"


async def test_with_on_low_confidence_critic_only_a_low_confidence_output_goes_to_the_critic() -> None:
    step = {**critic_step(3), "min_confidence": 0.7, "on_low_confidence": "critic"}
    confident = StandInDispatcher({"draft": drafter(), "review": reviewer([0.4])})
    ran = await execute(workflow([step]), confident, {"topic": "t"})
    assert (ran.status("memo"), confident.called("review")) == ("completed", [])
    unsure = {**step, "min_confidence": 0.9}
    doubtful = StandInDispatcher({"draft": drafter(), "review": reviewer([0.95])})
    ran = await execute(workflow([unsure]), doubtful, {"topic": "t"})
    assert ran.status("memo") == "completed"
    assert len(doubtful.called("review")) == 1


async def test_a_failing_critic_fails_the_step() -> None:
    async def down(_data: dict[str, Any]) -> dict[str, Any]:
        raise AccordError("agent_unavailable", "agent review-agent did not answer")

    dispatcher = StandInDispatcher({"draft": drafter(), "review": down})
    ran = await execute(workflow([critic_step(3)]), dispatcher, {"topic": "t"})
    assert ran.records["memo"].error == {
        "reason": "agent_unavailable",
        "message": "agent review-agent did not answer",
    }
    assert ran.records["memo"].output is None


# --- resuming ---------------------------------------------------------------------------------------------


async def test_a_resumed_execution_keeps_settled_steps_and_runs_the_blocked_ones() -> None:
    spec = workflow(
        [
            {"id": "a", "skill": "a", "min_confidence": 0.6},
            {"id": "b", "skill": "b", "input": {"v": "$steps.a.v"}},
        ]
    )
    dispatcher = StandInDispatcher({"a": answer({"v": 3, "confidence": 0.1}), "b": answer({"done": True})})
    first = await execute(spec, dispatcher, {})
    records = dict(first.records)
    records["a"].status = "completed"  # a reviewer accepted it
    records["b"].status = "pending"

    async def listener(_record: StepRecord) -> None:
        return None

    execution = Execution("run-1", spec, {}, dispatcher, listener, records)
    async with asyncio.timeout(WAIT_S):
        await execution.run()
    assert len(dispatcher.called("a")) == 1, "the reviewed step is not dispatched again"
    assert dispatcher.called("b")[0].data == {"v": 3}
    assert execution.records["b"].status == "completed"


async def test_the_listener_sees_each_step_start_and_settle() -> None:
    spec = workflow([{"id": "a", "skill": "a"}, {"id": "b", "skill": "b", "input": {"v": "$steps.a.v"}}])
    ran = await execute(spec, StandInDispatcher({"a": answer({"v": 1}), "b": answer({})}), {})
    assert ran.events == [("a", "running"), ("a", "completed"), ("b", "running"), ("b", "completed")]
