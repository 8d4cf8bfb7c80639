"""Dataflow execution of a workflow graph: each step starts as soon as its own inputs are ready.

Every step is one asyncio task that waits only for the steps it reads (and, for a branch, its router).
What a step does once ready:

1. dispatch its skill (the dispatcher resolves agents by card, balances and fails over), within the step's
   timeout, retrying transient failures `retries` times and a contract violation exactly once; an output
   that breaks its contract is never stored, so no other step can read it;
2. check the output's confidence against the step's threshold: below it, the output goes to the step's
   critic or to a human (`waiting_review`), or the step fails, as the workflow says;
3. run the critic-refiner loop when the step has a critic: draft, critique, revise with the critic's
   feedback, until the critic's output meets the workflow's acceptance conditions or the iteration cap;
4. as a router, select the branch its output names: the other branches are skipped.

A step whose input comes from a failed or skipped step is skipped; one whose input waits for a human is
`blocked` until the review is settled. Every decision (which agent answered, what was retried, which
branch, each loop round) is noted in the run's rationale.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from accord.errors import AccordError
from accord.usage import ModelUsage, Usage
from orchestrator import faults
from orchestrator.budgets import BudgetExceeded, RunBudget
from orchestrator.contracts import check_critic_output, check_step_output, confidence_of
from orchestrator.dispatch import CALLER_MISTAKES, StepOutcome
from orchestrator.prices import PriceCatalog
from orchestrator.step_grants import RemoteTask, StepRef
from orchestrator.workflows import (
    ApprovalSpec,
    CriticSpec,
    Scope,
    StepSpec,
    WorkflowSpec,
    lookup,
    resolve,
)

# Settled: nothing more will happen to the step in this execution.
SETTLED = frozenset({"completed", "failed", "skipped", "waiting_review", "waiting_approval", "blocked"})
# Waiting for a person: a reviewer (`waiting_review`) or an approver (`waiting_approval`).
WAITING = frozenset({"waiting_review", "waiting_approval"})
# Decided for good: a resumed run keeps these as they are.
FINAL = frozenset({"completed", "failed", "skipped"})
# A failure worth another attempt; what the agent itself called a bad request is not.
RETRYABLE = frozenset({"agent_unavailable", "timeout", "agent_failed"})
RETRY_BASE_DELAY_S = 0.05
# The dispatcher keeps a step's deadline itself (and cancels the agent's task when it passes); this is the
# engine's backstop behind it, late enough for that cancel to go out.
DISPATCH_GRACE_S = 1.5


class Dispatcher(Protocol):
    async def dispatch(
        self, skill: str, data: dict[str, Any], step: StepRef, timeout_s: float | None = None
    ) -> StepOutcome: ...


@dataclass
class StepRecord:
    """The observable state of one step in a run."""

    id: str
    skill: str
    status: str = "pending"
    agent: str | None = None
    task_id: str | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    latency_ms: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # The task grant of the attempt that decided the step: id, granted and dropped scopes, revoked or not.
    grant: dict[str, Any] | None = None
    confidence: float | None = None
    skipped: dict[str, Any] | None = None
    blocked_by: str | None = None
    route: dict[str, Any] | None = None
    loop: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    # The approval gate this step's output waits for (or waited for), by id.
    gate: str | None = None
    # The model usage its agents reported, over every try (and critic call): tokens by model and the cost.
    usage: dict[str, Any] | None = None
    # The dispatch attempt under way: its task label, try and idempotency key, and once the agent accepted
    # it, the agent and its A2A task id and state. A resumed run re-attaches to that task.
    inflight: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """A snapshot for the run record. Shallow: outputs are JSON values the engine never mutates, so
        they are shared rather than copied (a fan-out of hundreds is snapshotted many times)."""
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["attempts"] = [dict(attempt) for attempt in self.attempts]
        if self.inflight is not None:
            data["inflight"] = dict(self.inflight)
        if self.loop is not None:
            data["loop"] = {**self.loop, "history": list(self.loop.get("history", []))}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


_RECORD_FIELDS = tuple(f.name for f in fields(StepRecord))

StepListener = Callable[[StepRecord], Awaitable[None]]


@dataclass
class Execution:
    """One pass over a run's graph; a run resumed after a review is a new pass over the same records."""

    run_id: str
    workflow: WorkflowSpec
    run_input: dict[str, Any]
    dispatcher: Dispatcher
    listener: StepListener
    records: dict[str, StepRecord] = field(default_factory=dict)
    rationale: list[dict[str, Any]] = field(default_factory=list)
    budget: RunBudget | None = None
    # The run's approval gates by id: pending or decided (see `orchestrator.runs`).
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Prices model tokens (None: usage is counted, not priced).
    prices: PriceCatalog | None = None

    def __post_init__(self) -> None:
        self._gates_before = frozenset(self.approvals)
        for step in self.workflow.steps:
            previous = self.records.get(step.id)
            if previous is not None and previous.status == "running":
                # In flight when the last process stopped: run again, re-attaching to its agent's task.
                previous.status = "pending"
                self.records[step.id] = previous
                continue
            # A step waiting for a person keeps its output until the person decides.
            keep = previous is not None and (previous.status in FINAL or previous.status in WAITING)
            self.records[step.id] = previous if keep and previous else StepRecord(step.id, step.skill)
        self._done = {step.id: asyncio.Event() for step in self.workflow.steps}
        self._routers = self.workflow.routers()
        self._selected: dict[str, set[str]] = {}
        for step in self.workflow.steps:
            record = self.records[step.id]
            if step.route is None or record.status != "completed":
                continue
            if record.route is not None:
                self._selected[step.id] = set(record.route.get("selected", []))
            else:
                # Accepted by a reviewer before its branch was chosen: choose it now (a value no branch
                # names goes back to review).
                self._select_branch(step, record)

    @property
    def new_gates(self) -> list[str]:
        """The approval gates this execution opened (earlier ones were requested, and audited, before)."""
        return [gate for gate in self.approvals if gate not in self._gates_before]

    def note(self, step: str | None, kind: str, detail: str, **data: Any) -> None:
        """Record a decision and why it was taken."""
        self.rationale.append({"at": time.time(), "step": step, "kind": kind, "detail": detail, **data})

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return {
            sid: record.output
            for sid, record in self.records.items()
            if record.status == "completed" and record.output is not None
        }

    async def run(self) -> dict[str, StepRecord]:
        """Execute the graph; `BudgetExceeded` once a limit of the run's budget is reached, after every
        step under way was cancelled and every other one settled as stopped."""
        stopped: BudgetExceeded | None = None
        try:
            async with asyncio.timeout(self.budget.wall_left() if self.budget else None):
                try:
                    async with asyncio.TaskGroup() as group:
                        for step in self.workflow.steps:
                            group.create_task(self._step(step))
                except* BudgetExceeded as group_error:
                    first = group_error.exceptions[0]
                    assert isinstance(first, BudgetExceeded)
                    stopped = first
        except TimeoutError:
            assert self.budget is not None
            stopped = self.budget.trip(
                "wall_s", f"the run's {self.budget.limits.wall_s:g}s of wall time are spent"
            )
        if stopped is not None:
            self._stop_all(stopped)
            raise stopped
        return self.records

    def _stop_all(self, exceeded: BudgetExceeded) -> None:
        """No new work: steps under way were cancelled (they fail), the others will not run (skipped)."""
        for record in self.records.values():
            never_sent = record.inflight is None and not record.attempts
            if record.status == "running" and never_sent:
                record.finished_at = time.time()
                self._skip(record, "budget_exceeded", exceeded.detail)
            elif record.status == "running":
                record.status, record.output, record.inflight = "failed", None, None
                record.error = {"reason": "budget_exceeded", "message": f"cancelled: {exceeded.detail}"}
                record.finished_at = time.time()
            elif record.status == "pending":
                self._skip(record, "budget_exceeded", exceeded.detail)
        self.note(None, "budget", f"stopped: {exceeded.detail}", limit=exceeded.limit)

    async def _step(self, step: StepSpec) -> None:
        record = self.records[step.id]
        if record.status in FINAL or record.status in WAITING:
            self._done[step.id].set()
            return
        try:
            if await self._inputs_ready(step, record):
                await self._execute(step, record)
        finally:
            self._done[step.id].set()
            await self.listener(record)

    # --- readiness ---------------------------------------------------------------------------------------

    async def _inputs_ready(self, step: StepSpec, record: StepRecord) -> bool:
        """Wait for the steps this one reads (and its router); False when it must not run."""
        router = self._routers.get(step.id)
        waits = sorted(step.dependencies() | ({router} if router else set()))
        for dependency in waits:
            await self._done[dependency].wait()
            upstream = self.records[dependency]
            if upstream.status in WAITING or upstream.status == "blocked":
                record.status, record.blocked_by = "blocked", dependency
                return False
            if upstream.status == "failed":
                self._skip(record, "dependency_failed", f"{dependency} failed")
                return False
            if upstream.status == "skipped":
                inherited = (upstream.skipped or {}).get("reason") == "branch_not_taken"
                reason = "branch_not_taken" if inherited else "dependency_skipped"
                self._skip(record, reason, f"{dependency} was skipped")
                return False
        if router is not None and step.id not in self._selected.get(router, set()):
            self._skip(record, "branch_not_taken", f"router {router} selected another branch")
            return False
        return True

    def _skip(self, record: StepRecord, reason: str, detail: str) -> None:
        record.status, record.skipped, record.blocked_by = (
            "skipped",
            {"reason": reason, "detail": detail},
            None,
        )
        self.note(record.id, "skip", f"{record.id} skipped: {detail}", reason=reason)

    # --- execution ---------------------------------------------------------------------------------------

    async def _execute(self, step: StepSpec, record: StepRecord) -> None:
        resumed = record.inflight is not None and record.started_at is not None
        started_at = record.started_at if resumed else time.time()
        record.status, record.started_at, record.blocked_by = "running", started_at, None
        record.error = record.review = None
        await self.listener(record)
        scope = Scope(self.run_input, self.outputs)
        data: dict[str, Any] = resolve(step.input, scope)
        try:
            outcome = await self._call(
                step.id,
                step.id,
                step.skill,
                data,
                step.timeout_s,
                step.retries,
                record,
                lambda agent, output: check_step_output(step, agent, output),
            )
            self._accept_outcome(record, outcome, step)
            needs_critic = step.critic is not None and (
                step.on_low_confidence != "critic" or self._below_threshold(step, record)
            )
            if needs_critic:
                assert step.critic is not None
                if not await self._critic_loop(step, step.critic, record, data, scope):
                    return
            gated = self._below_threshold(step, record) and step.on_low_confidence != "critic"
            if gated and not self._low_confidence(step, record):
                return
            if step.route is not None and not self._select_branch(step, record):
                return
            if self._held_for_approval(step, record):
                return
            record.status = "completed"
        except BudgetExceeded:
            raise  # the whole run stops (`run`), not only this step
        except AccordError as error:
            record.status, record.output = "failed", None
            record.error = {"reason": error.reason, "message": error.detail}
        finally:
            record.finished_at = time.time()

    def _accept_outcome(self, record: StepRecord, outcome: StepOutcome, step: StepSpec) -> None:
        record.agent, record.task_id, record.output = outcome.agent, outcome.task_id, outcome.output
        record.latency_ms, record.grant = round(outcome.latency_ms, 2), outcome.grant
        record.confidence = confidence_of(step, outcome.output)

    def _below_threshold(self, step: StepSpec, record: StepRecord) -> bool:
        if step.min_confidence is None:
            return False
        return record.confidence is None or record.confidence < step.min_confidence

    def _low_confidence(self, step: StepSpec, record: StepRecord) -> bool:
        """Apply the workflow's answer to a low-confidence output; True when the step may still complete."""
        detail = f"confidence {record.confidence} below the step's threshold {step.min_confidence}"
        if step.on_low_confidence == "fail":
            self.note(step.id, "confidence", f"{detail}: the step fails, as the workflow says")
            raise AccordError("low_confidence", f"{step.id}: {detail}")
        self._await_review(record, "low_confidence", detail, threshold=step.min_confidence)
        return False

    def _await_review(self, record: StepRecord, reason: str, detail: str, **data: Any) -> None:
        record.status = "waiting_review"
        record.review = {"reason": reason, "detail": detail, "requested_at": time.time(), **data}
        self.note(record.id, "review", f"{record.id} waits for human review: {detail}", reason=reason)

    def _held_for_approval(self, step: StepSpec, record: StepRecord) -> bool:
        """Hold the step's output for its gate when the gate applies; True when it now waits."""
        gate = self.workflow.approval_after(step.id)
        if gate is None or not gate.applies(record.output) or gate.id in self.approvals:
            return False
        self.approvals[gate.id] = approval_request(gate, step.id)
        record.status, record.gate = "waiting_approval", gate.id
        self.note(step.id, "approval", f"{step.id} waits for approval {gate.id}", gate=gate.id)
        return True

    def _select_branch(self, step: StepSpec, record: StepRecord) -> bool:
        assert step.route is not None
        assert record.output is not None
        value, _present = lookup(record.output, step.route.field)
        key = str(value).lower() if isinstance(value, bool) else str(value)
        targets = step.route.branches.get(key)
        if targets is None:
            detail = f"{step.route.field}={value!r} names no branch ({', '.join(step.route.branches)})"
            self._await_review(record, "no_route", detail)
            return False
        not_taken = sorted(step.route.gated_steps() - set(targets))
        record.route = {
            "field": step.route.field,
            "value": value,
            "selected": targets,
            "not_taken": not_taken,
        }
        self._selected[step.id] = set(targets)
        self.note(
            step.id,
            "route",
            f"{step.route.field}={value!r} selects {', '.join(targets)}; "
            f"not taken: {', '.join(not_taken) or '-'}",
        )
        return True

    # --- the critic-refiner loop ---------------------------------------------------------------------

    async def _critic_loop(
        self, step: StepSpec, critic: CriticSpec, record: StepRecord, data: dict[str, Any], scope: Scope
    ) -> bool:
        """Critique and revise until accepted or capped; False when the step must wait for review."""
        history: list[dict[str, Any]] = []
        record.loop = {"max_iterations": critic.max_iterations, "state": "running", "history": history}
        review: dict[str, Any] | None = None
        feedback: list[Any] = []
        for iteration in range(critic.max_iterations):
            loop_vars = {"iteration": iteration, "feedback": feedback}
            if iteration > 0:
                assert record.output is not None
                revision_scope = Scope(scope.run_input, scope.outputs, record.output, review, loop_vars)
                revised = {**data, **resolve(critic.revise, revision_scope)}
                outcome = await self._call(
                    step.id,
                    f"{step.id}.draft.{iteration}",
                    step.skill,
                    revised,
                    step.timeout_s,
                    step.retries,
                    record,
                    lambda agent, output: check_step_output(step, agent, output),
                )
                self._accept_outcome(record, outcome, step)
            critique_scope = Scope(scope.run_input, scope.outputs, record.output, review, loop_vars)
            critique = await self._call(
                step.id,
                f"{step.id}.review.{iteration}",
                critic.skill,
                resolve(critic.input, critique_scope),
                critic.timeout_s,
                step.retries,
                record,
                lambda agent, output: check_critic_output(critic, agent, output),
            )
            review = critique.output
            unmet = [c.describe() for c in critic.accept if not c.holds(review)]
            feedback = critic.feedback.project(review) if critic.feedback else []
            history.append(
                {
                    "iteration": iteration,
                    "drafted_by": record.agent,
                    "draft_confidence": record.confidence,
                    "reviewed_by": critique.agent,
                    "review": review,
                    "accepted": not unmet,
                    "unmet": unmet,
                }
            )
            if not unmet:
                record.loop.update(state="accepted", iterations=iteration + 1, review=review)
                self.note(step.id, "loop", f"iteration {iteration}: {critique.agent} accepted the draft")
                return True
            self.note(
                step.id,
                "loop",
                f"iteration {iteration}: not accepted ({'; '.join(unmet)}); "
                + ("revising with the critic's feedback" if iteration + 1 < critic.max_iterations else "cap"),
                feedback_items=len(feedback),
            )
        record.loop.update(state="max_iterations_reached", iterations=critic.max_iterations, review=review)
        record.loop["unresolved"] = feedback
        detail = f"not accepted after {critic.max_iterations} iterations"
        if critic.on_max_iterations == "review":
            self._await_review(record, "max_iterations_reached", detail)
            return False
        self.note(step.id, "loop", f"{detail}: max_iterations_reached, the last draft goes on as it is")
        return True

    # --- one skill call, with its retries -------------------------------------------------------------

    async def _call(
        self,
        step_id: str,
        task: str,
        skill: str,
        data: dict[str, Any],
        timeout_s: float | None,
        retries: int,
        record: StepRecord,
        check: Callable[[str, dict[str, Any]], None],
    ) -> StepOutcome:
        """Dispatch `skill`; retry transient failures `retries` times and a contract violation once.

        Each try carries the idempotency key `<run>:<task>:<try>`; a try a previous process left in flight
        (`record.inflight`) is resumed under its own key, re-attached to the agent's task when it has one."""
        contract_retried, transient_left, tries = False, retries, 0
        retry_reason: str | None = None
        previous = record.inflight if record.inflight and record.inflight.get("task") == task else None
        if previous is not None:
            tries = int(previous.get("try", 1)) - 1
            transient_left = max(0, retries - tries)
        while True:
            tries += 1
            if self.budget is not None and not _resuming(previous, tries):
                self.budget.reserve_task()
            step = self._attempt(record, task, tries, previous, retry_reason)
            charged = False
            previous = None
            try:
                faults.reached("before_dispatch")
                async with _deadline(timeout_s, skill, DISPATCH_GRACE_S):
                    outcome = await self.dispatcher.dispatch(skill, data, step, timeout_s)
                faults.reached("after_completed")
                # What the answer cost counts whether or not the answer is then used.
                charged = True
                self._charge(record, step.key or "", outcome.usage)
                check(outcome.agent, outcome.output)
            except BudgetExceeded:
                # Only the answer's own charge raises it here: that answer took the run past its budget.
                record.inflight = None
                self._record_attempts(record, task, tries, outcome.attempts, "budget_exceeded")
                raise
            except AccordError as error:
                record.inflight = None
                self._record_attempts(record, task, tries, error.context.get("attempts", []), error.reason)
                if "grant" in error.context:
                    record.grant = error.context["grant"]
                usage = Usage.from_json(error.context.get("usage") or {"models": {}})
                if not charged and error.reason != "timeout":
                    # A try that timed out keeps its reservation: its agent may have spent it.
                    self._charge(record, step.key or "", usage)
                if error.context.get("agent_reason") == "budget_exceeded":
                    raise self._agent_budget_spent(step_id, error.context.get("agent_limit")) from None
                retry_reason = error.reason
                if error.reason == "contract_violation" and not contract_retried:
                    contract_retried = True
                    self.note(step_id, "retry", f"{task}: {error.detail}; retrying once", reason=error.reason)
                    continue
                if error.reason in RETRYABLE and transient_left > 0 and not _agent_refused(error):
                    transient_left -= 1
                    self.note(
                        step_id,
                        "retry",
                        f"{task}: {error.detail}; {transient_left} retries left",
                        reason=error.reason,
                    )
                    await asyncio.sleep(_backoff(retries - transient_left - 1))
                    continue
                raise
            record.inflight = None
            self._record_attempts(record, task, tries, outcome.attempts, None)
            self.note(step_id, "agent", _choice(skill, task, outcome), agent=outcome.agent)
            return outcome

    def _charge(self, record: StepRecord, key: str, usage: Usage) -> None:
        """Count what a try reported against the step and the run; `BudgetExceeded` past the run's tokens
        or cost. A try that reported nothing gives its token reservation back."""
        if self.budget is not None and not usage.by_model:
            self.budget.release(key)
        if not usage.by_model:
            return
        cost = self.prices.cost(usage) if self.prices is not None else 0.0
        record.usage = _added_usage(record.usage, usage, cost)
        if self.budget is not None:
            self.budget.charge(key, usage, cost)

    def _agent_budget_spent(self, step_id: str, limit: object) -> AccordError:
        """An agent failed its step for a budget, and said which. The run's tool calls (the gateway refused
        one, counted for the whole run) stop the run. Any other (its share of the run's tokens, or the
        budget of a run another orchestrator ran for the step) fails the step, not the run: the run stops
        only once its own total is spent (`_charge`)."""
        if limit == "tool_calls":
            return self._tool_budget_spent(step_id)
        named = limit if isinstance(limit, str) else "an unnamed budget"
        return AccordError("budget_exceeded", f"{step_id}: the agent ran out of {named[:32]} for this step")

    def _tool_budget_spent(self, step_id: str) -> BudgetExceeded:
        limit = self.budget.limits.tool_calls if self.budget else None
        detail = (
            f"{step_id}: the gateway refused a tool call, the run's budget of {limit} tool calls is spent"
        )
        return self.budget.trip("tool_calls", detail) if self.budget else BudgetExceeded("tool_calls", detail)

    def _attempt(
        self,
        record: StepRecord,
        task: str,
        tries: int,
        previous: dict[str, Any] | None,
        retry_reason: str | None = None,
    ) -> StepRef:
        """The try about to be sent: recorded as in flight, with whatever a previous process knew of it."""
        key = f"{self.run_id}:{task}:{tries}"
        resume = None
        if previous is not None and previous.get("try") == tries:
            key = str(previous.get("key") or key)
            if previous.get("task_id") and previous.get("agent"):
                resume = RemoteTask(previous["agent"], previous["task_id"], str(previous.get("state")))
        record.inflight = {"task": task, "try": tries, "key": key}

        async def accepted(remote: RemoteTask) -> None:
            if record.inflight is None or record.inflight.get("key") != key:
                return
            record.inflight.update(agent=remote.agent, task_id=remote.task_id, state=remote.state)
            record.agent, record.task_id = remote.agent, remote.task_id
            await self.listener(record)

        budget = self.budget
        allowance = budget.reserve_tokens(key, self._steps_to_send()) if budget is not None else None
        return StepRef(
            self.run_id,
            task,
            key=key,
            resume=resume,
            on_accepted=accepted,
            tool_call_limit=budget.limits.tool_calls if budget else None,
            token_allowance=allowance,
            depth_limit=budget.limits.depth if budget else None,
            stop_at_agent=budget.spent_out if budget else None,
            attempt=tries,
            retry_reason=retry_reason,
        )

    def _steps_to_send(self) -> int:
        """The steps that will still need tokens and hold none now (this try included): those not started,
        and those under way without a reservation (between two tries, say)."""
        reserved = self.budget.reserved if self.budget is not None else {}
        waiting = sum(
            1
            for record in self.records.values()
            if record.status == "pending"
            or (record.status == "running" and (record.inflight or {}).get("key") not in reserved)
        )
        if self.budget is not None and self.budget.limits.tasks is not None:
            # No more steps than the tasks left (this one's is already counted) will ever be sent.
            waiting = min(waiting, self.budget.limits.tasks - self.budget.tasks + 1)
        return max(1, waiting)

    @staticmethod
    def _record_attempts(
        record: StepRecord, task: str, tries: int, attempts: list[dict[str, Any]], reason: str | None
    ) -> None:
        entries = [{**attempt, "task": task, "try": tries} for attempt in attempts] or [
            {"task": task, "try": tries}
        ]
        if reason is not None:
            entries[-1]["error"] = reason
        record.attempts.extend(entries)


def _added_usage(previous: dict[str, Any] | None, usage: Usage, cost: float) -> dict[str, Any]:
    """A step's usage record (written here, so read without the checks a report gets) with one more try's
    usage added."""
    models = (previous or {}).get("models", {})
    before = Usage(
        {
            m: ModelUsage(int(c.get("input_tokens", 0)), int(c.get("output_tokens", 0)))
            for m, c in models.items()
        }
    )
    total = before.plus(usage)
    return {
        **total.to_json(),
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "cost": round(float((previous or {}).get("cost", 0.0)) + cost, 6),
    }


@contextlib.asynccontextmanager
async def _deadline(timeout_s: float | None, skill: str, grace_s: float = 0.0) -> AsyncIterator[None]:
    if timeout_s is None:
        yield
        return
    try:
        async with asyncio.timeout(timeout_s + grace_s):
            yield
    except TimeoutError:
        raise AccordError("timeout", f"{skill} did not answer within {timeout_s:g}s") from None


def approval_request(gate: ApprovalSpec, after: str) -> dict[str, Any]:
    """A gate's record in the run, as it starts waiting for a decision."""
    now = time.time()
    return {
        "gate": gate.id,
        "after": after,
        "status": "pending",
        "description": gate.description,
        "requested_at": now,
        "expires_at": now + gate.expires_after_s,
        "on_expiry": gate.on_expiry,
    }


def _backoff(retry: int) -> float:
    """Exponential backoff with jitter: retries of a fan-out that failed together do not return together."""
    return RETRY_BASE_DELAY_S * 2.0**retry * random.uniform(0.5, 1.5)


def _resuming(previous: dict[str, Any] | None, tries: int) -> bool:
    """A try a previous process sent (and counted against the budget) is resumed, not sent again."""
    return previous is not None and previous.get("try") == tries


def _agent_refused(error: AccordError) -> bool:
    return error.reason == "agent_failed" and error.context.get("agent_reason") in CALLER_MISTAKES


def _choice(skill: str, task: str, outcome: StepOutcome) -> str:
    """Why this agent: the first in the registry's rotation of active agents whose card offers the skill
    that answered; the agents tried before it say why they were passed over."""
    passed = [f"{a['agent']} ({a.get('outcome', 'failed')})" for a in outcome.attempts[:-1] if "agent" in a]
    tail = f", after {', '.join(passed)}" if passed else ""
    return (
        f"{task}: {skill} answered by {outcome.agent}, the next active agent in rotation whose card "
        f"offers {skill}{tail}"
    )


async def execute_steps(
    run_id: str,
    workflow: WorkflowSpec,
    run_input: dict[str, Any],
    dispatcher: Dispatcher,
    listener: StepListener,
) -> dict[str, StepRecord]:
    """Run every step of a fresh run (see `Execution` for runs with history)."""
    return await Execution(run_id, workflow, run_input, dispatcher, listener).run()
