"""The orchestrator as an A2A agent: one skill per workflow, progress streamed as status events.

Any A2A caller can run a workflow, including another orchestrator whose workflow has a step with this
skill (hierarchical orchestration). Each step's status change is streamed as a WORKING status update
carrying `{"step", "skill", "status", "agent", ...}`; the final artifact `result` is the run summary
(status, result, steps, conflicts, review). A run that waits for human review still ends the A2A task
(COMPLETED, artifact status `waiting_review`): the caller decides what a pending review means to it.

A request carries its delegation depth (`accord.delegation`); one deeper than the orchestrator's limit is
rejected with `delegation_depth_exceeded` before anything runs.
"""

from __future__ import annotations

from typing import Any

from a2a.helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import AgentCard, Part, Task, TaskState

from accord.caller_auth import RUNS_REVIEW, caller_scopes
from accord.cards import SkillSchemas, build_card, load_card_source
from accord.delegation import depth_of
from accord.errors import AccordError
from accord.payloads import (
    BUDGET_METADATA_KEY,
    data_part,
    first_data,
    metadata_of,
    requested_skill,
    task_result,
)
from accord.usage import USAGE_METADATA_KEY, Usage
from orchestrator.budgets import budget_from_object
from orchestrator.engine import StepRecord
from orchestrator.runs import RunService
from orchestrator.workflows import WorkflowSpec

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["run_id", "workflow", "status"],
    "properties": {
        "run_id": {"type": "string"},
        "workflow": {"type": "string"},
        "status": {"enum": ["completed", "failed", "waiting_review", "waiting_approval", "budget_exceeded"]},
        "result": {"type": ["object", "null"]},
        "steps": {"type": "array"},
        "conflicts": {"type": "array"},
        "review": {"type": ["object", "null"]},
        "error": {"type": ["object", "null"]},
        "budget": {"type": ["object", "null"]},
        "approvals": {"type": ["object", "null"]},
        "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    },
}
WORKFLOW_TAG = "workflow"
# How long an A2A decision waits for the run it resumed to settle again.
DECISION_WAIT_S = 3600.0


def orchestrator_card(workflows: dict[str, WorkflowSpec], base_url: str, grpc_address: str) -> AgentCard:
    """The card: one skill per workflow. Its version is the card source's followed by the sum of the
    workflows' versions, so a workflow edited (and, as the schema asks, re-versioned) or added yields a
    newer card, which the registry accepts where it would quarantine a changed card of the same version."""
    source = load_card_source("orchestrator")
    source["version"] = f"{source['version']}.{sum(spec.version for spec in workflows.values())}"
    source["skills"] = [
        {
            "id": spec.name,
            "name": spec.name,
            "description": spec.description,
            "tags": [WORKFLOW_TAG, *spec.patterns()],
            "inputModes": ["application/json"],
            "outputModes": ["application/json"],
        }
        for spec in workflows.values()
    ]
    schemas = {spec.name: SkillSchemas(spec.input_schema, RESULT_SCHEMA) for spec in workflows.values()}
    return build_card(source, base_url, grpc_address, schemas)


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The final artifact of a run: what a caller (or a parent workflow) needs of it."""
    keys = ("result", "steps", "conflicts", "review", "error", "budget", "approvals")
    summary = {key: run.get(key) for key in keys}
    summary.update(run_id=run["id"], workflow=run["workflow"], status=run["status"])
    summary["confidence"] = run_confidence(run)
    return summary


def run_confidence(run: dict[str, Any]) -> float | None:
    """The least confident completed step, for a parent workflow's threshold; 0 while a human must look."""
    if run["status"] in ("waiting_review", "waiting_approval"):
        return 0.0
    reported = [s["confidence"] for s in run["steps"] if s.get("confidence") is not None]
    return min(reported) if reported else None


class WorkflowExecutor(AgentExecutor):
    def __init__(self, runs: RunService) -> None:
        self._runs = runs

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        if context.current_task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            await self._decide(context, task, updater)
            return
        workflow = requested_skill(context.message) or _only_workflow(self._runs)
        data = first_data(context.message.parts)
        depth = depth_of(context.message)
        try:
            budget = budget_from_object(metadata_of(context.message).get(BUDGET_METADATA_KEY))
        except AccordError as error:
            await self._runs.refuse(workflow or "", error, _caller(context))  # `admit` audits its own
            await updater.reject(updater.new_agent_message([_error_part(error)]))
            return
        try:
            spec = await self._runs.admit(workflow or "", data, _caller(context), depth, budget)
        except AccordError as error:
            await updater.reject(updater.new_agent_message([_error_part(error)]))
            return
        assert data is not None
        await updater.start_work()

        async def progress(record: StepRecord) -> None:
            await updater.update_status(
                TaskState.TASK_STATE_WORKING, updater.new_agent_message([data_part(step_event(record))])
            )

        run = await self._runs.run(spec, data, _caller(context), progress, depth, budget)
        await _report(run, updater, asks_caller=depth == 0)

    async def _decide(self, context: RequestContext, task: Task, updater: TaskUpdater) -> None:
        """A follow-up on a task waiting for approval: the caller's decision on one gate
        (`{"gate", "decision": "approve"|"reject", "reason"}`), which needs `runs:review`."""
        assert context.message is not None
        summary = task_result(task) or {}
        answer = first_data(context.message.parts) or {}
        run_id = str(summary.get("run_id", ""))
        try:
            if RUNS_REVIEW not in caller_scopes(context.call_context):
                raise AccordError("insufficient_scope", f"deciding an approval needs the scope {RUNS_REVIEW}")
            await self._runs.decide(
                run_id,
                str(answer.get("gate", "")),
                answer.get("decision"),
                answer.get("reason"),
                _caller(context),
            )
        except AccordError as error:
            # Still waiting: the caller may answer again.
            await updater.requires_input(updater.new_agent_message([_error_part(error)]))
            return
        await updater.start_work()
        await _report(await self._runs.wait(run_id, DECISION_WAIT_S), updater, asks_caller=True)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None
        assert context.context_id is not None
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


async def _report(run: dict[str, Any], updater: TaskUpdater, asks_caller: bool) -> None:
    """The run's outcome on its A2A task. A run waiting for approval asks the caller for the decision
    (`input-required`, naming the open gates), unless the caller is another orchestrator (a delegated run:
    its task completes with the status, and people decide through the API)."""
    usage = _run_usage(run)
    metadata = {USAGE_METADATA_KEY: usage.to_json()} if usage.by_model else None
    await updater.add_artifact(
        [data_part(run_summary(run))], artifact_id="result", name="result", metadata=metadata
    )
    if run["status"] == "waiting_approval" and asks_caller:
        pending = {g: s for g, s in (run.get("approvals") or {}).items() if s.get("status") == "pending"}
        question = {
            "run_id": run["id"],
            "approvals": pending,
            "answer": {"gate": "<one of approvals>", "decision": "approve | reject", "reason": "..."},
        }
        await updater.requires_input(updater.new_agent_message([data_part(question)]))
    elif run["status"] in ("failed", "budget_exceeded"):
        failure: dict[str, Any] = {"error": run["error"]}
        if usage.by_model:
            failure["usage"] = usage.to_json()  # what the run spent, for a delegating run's budget
        await updater.failed(updater.new_agent_message([data_part(failure)]))
    else:
        await updater.complete()


def _run_usage(run: dict[str, Any]) -> Usage:
    """The model tokens the run's steps reported, by model: what a delegating run charges for this one."""
    total = Usage()
    for step in run.get("steps") or []:
        total = total.plus(Usage.from_record((step.get("usage") or {}).get("models")))
    return total


def step_event(record: StepRecord) -> dict[str, Any]:
    """One streamed progress event: a step's status and what decided it."""
    event: dict[str, Any] = {
        "step": record.id,
        "skill": record.skill,
        "status": record.status,
        "agent": record.agent,
    }
    if record.error:
        event["error"] = record.error
    if record.skipped:
        event["skipped"] = record.skipped
    if record.review:
        event["review"] = {"reason": record.review.get("reason"), "detail": record.review.get("detail")}
    if record.route:
        event["route"] = record.route
    if record.loop:
        event["loop"] = {"state": record.loop.get("state"), "iterations": record.loop.get("iterations")}
    return event


def _only_workflow(runs: RunService) -> str | None:
    return next(iter(runs.workflows)) if len(runs.workflows) == 1 else None


def _caller(context: RequestContext) -> str:
    user = context.call_context.user if context.call_context else None
    name = getattr(user, "user_name", "") if user else ""
    return f"a2a:{name or 'anonymous'}"


def _error_part(error: AccordError) -> Part:
    return data_part({"error": {"reason": error.reason, "message": error.detail, **error.context}})
