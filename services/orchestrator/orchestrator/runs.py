"""Runs: validate a request, record it, execute its graph, reconcile facts, synthesize, keep the record.

A run ends `completed`, `failed`, `budget_exceeded` (a limit of its budget was reached:
`orchestrator.budgets`), or `waiting_review`: a step's output needs a human (low confidence, a
critic loop capped with `on_max_iterations: review`, a route value no branch names) or the workflow's
conflict rules cannot settle a fact. A reviewer's decision (`review`) resumes the run from its record:
settled steps keep their outputs, steps blocked behind the review run then.

The record is the run's checkpoint, written at step boundaries (a step starting, its agent accepting its
task, the step settling; changes made together coalesce into one write). A `running` run whose owner
stopped is resumed from it by whichever replica holds its lease (`maintain`): settled steps keep their
outputs and are never sent again; a step in flight is re-attached to its agent's task by the stored task
id, or sent again under the same idempotency key when the agent does not know it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator
from opentelemetry.trace import Span

from accord.audit import AuditEvent, AuditLog
from accord.delegation import DEFAULT_MAX_DEPTH, delegating
from accord.errors import AccordError
from accord.telemetry import record_budget, workflow_run
from orchestrator import faults
from orchestrator.budgets import BudgetExceeded, RunBudget
from orchestrator.conflicts import reconcile
from orchestrator.engine import Dispatcher, Execution, StepListener, StepRecord, approval_request
from orchestrator.prices import PriceCatalog
from orchestrator.run_store import LeaseLost, RunStore
from orchestrator.synthesis import SYNTHESIZERS, SynthesisInput
from orchestrator.workflows import SYNTHESIS, BudgetSpec, WorkflowSpec

RUNNING, COMPLETED, FAILED, WAITING_REVIEW = "running", "completed", "failed", "waiting_review"
WAITING_APPROVAL = "waiting_approval"
APPROVAL_DECISIONS = {"approve": "approved", "reject": "rejected"}
_MAX_REASON = 500
BUDGET_EXCEEDED = "budget_exceeded"
DECISIONS = ("accept", "reject")
# The longest a running run's record lags behind its steps (the REST API shows progress from it).
RECORD_INTERVAL_S = 0.1
# How long a replica's claim on a running run holds unless renewed (renewed every third of it).
DEFAULT_LEASE_S = 15.0

logger = logging.getLogger(__name__)


class RunService:
    """The one place runs are started, whatever the entry point (REST or A2A)."""

    def __init__(
        self,
        workflows: dict[str, WorkflowSpec],
        dispatcher: Dispatcher,
        store: RunStore,
        audit: AuditLog,
        max_delegation_depth: int = DEFAULT_MAX_DEPTH,
        owner: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        prices: PriceCatalog | None = None,
    ) -> None:
        missing = {spec.synthesis for spec in workflows.values()} - set(SYNTHESIZERS)
        if missing:
            raise ValueError(f"workflows name unknown synthesizers: {sorted(missing)}")
        self.workflows = workflows
        self.max_delegation_depth = max_delegation_depth
        self.prices = prices
        self._dispatcher = dispatcher
        self._store = store
        self._audit = audit
        self._tasks: set[asyncio.Task[None]] = set()
        # Settled runs of this process, so waiting callers need not poll the store.
        self._settled: dict[str, asyncio.Event] = {}
        self._reviewing = asyncio.Lock()
        # Each new run's `run.start` audit record, being written while its steps run.
        self._opening: dict[str, asyncio.Task[Any]] = {}
        # This replica's name in run leases, and the runs it executes (by the task executing each).
        self.owner = owner or f"orchestrator-{uuid.uuid4()}"
        self.lease_s = lease_s
        self._owned: dict[str, asyncio.Task[Any] | None] = {}
        # Told each finished run's budget record (what it spent of which limits), for `/metrics`.
        self.on_budget: Callable[[dict[str, Any]], None] | None = None

    @property
    def executing(self) -> int:
        """Runs this replica executes right now."""
        return len(self._owned)

    async def admit(
        self, workflow: str, data: Any, actor: str, depth: int = 0, budget: BudgetSpec | None = None
    ) -> WorkflowSpec:
        """Check a request before anything starts; every refusal is audited and changes nothing else."""
        try:
            if depth > self.max_delegation_depth:
                raise AccordError(
                    "delegation_depth_exceeded",
                    f"request is {depth} delegations deep; this orchestrator accepts at most "
                    f"{self.max_delegation_depth}",
                )
            spec = self.workflows.get(workflow)
            if spec is None:
                raise AccordError("unknown_workflow", f"no workflow named {workflow[:64]!r}")
            allowed = spec.budget.tightened(budget).depth
            if allowed is not None and depth > allowed:
                raise AccordError(
                    "delegation_depth_exceeded",
                    f"request is {depth} delegations deep; its budget allows at most {allowed}",
                )
            _check_input(spec, data)
            return spec
        except AccordError as error:
            await self.refuse(workflow, error, actor)
            raise

    async def refuse(self, workflow: str, error: AccordError, actor: str) -> None:
        """Audit a refused start; nothing else is written."""
        await self._audit.append(
            AuditEvent(actor, "run.start", "denied", error.reason, details={"workflow": workflow[:64]})
        )

    async def start(
        self,
        spec: WorkflowSpec,
        data: dict[str, Any],
        actor: str,
        depth: int = 0,
        budget: BudgetSpec | None = None,
    ) -> str:
        """Record the run and execute it in the background; returns its id. `budget` tightens the
        workflow's."""
        run_id, limits = await self._create(spec, data, actor, depth, budget)
        self._background(self._execute(run_id, spec, data, depth, None, budget=limits))
        return run_id

    async def run(
        self,
        spec: WorkflowSpec,
        data: dict[str, Any],
        actor: str,
        listener: StepListener | None = None,
        depth: int = 0,
        budget: BudgetSpec | None = None,
    ) -> dict[str, Any]:
        """Record and execute the run in the caller's task; returns the run as stored."""
        run_id, limits = await self._create(spec, data, actor, depth, budget)
        await self._execute(run_id, spec, data, depth, listener, budget=limits)
        return await self.get(run_id)

    async def review(self, run_id: str, decision: dict[str, Any], actor: str) -> dict[str, Any]:
        """A reviewer's decision on a run waiting for review; the run resumes in the background.

        `{"decision": "accept"}` accepts every output waiting for review as it is; conflicts need
        `"facts": {fact: step}` naming whose report to keep. `{"decision": "reject"}` fails the outputs
        under review (their dependents are skipped) or, for conflicts, the run.
        """
        async with self._reviewing:  # two reviewers of one run: the second finds it running
            return await self._review(run_id, decision, actor)

    async def _review(self, run_id: str, decision: dict[str, Any], actor: str) -> dict[str, Any]:
        run = await self.get(run_id)
        spec = self.workflows.get(run["workflow"])
        if run["status"] != WAITING_REVIEW or spec is None:
            raise AccordError(
                "review_not_pending", f"run {run_id} is {run['status']}, not waiting for review"
            )
        verdict, choices = _parse_decision(decision, run)
        records = {step["id"]: StepRecord.from_dict(step) for step in run["steps"]}
        rationale = list(run["rationale"])
        _apply_verdict(records, rationale, verdict, actor, decision.get("note"))
        await self._audit.append(
            AuditEvent(actor, "run.review", verdict, run_id=run_id, details={"facts": choices})
        )
        if verdict == "reject" and run["review"] and run["review"]["reason"] == "unresolved_conflict":
            error = AccordError("review_rejected", "a reviewer rejected the conflicting facts")
            await self._finish_failed(run_id, error, records, rationale, fenced=False)
            return await self.get(run_id)
        return await self._resume_decided(
            run, spec, records, rationale, run.get("approvals"), choices, review=None
        )

    async def _resume_decided(
        self,
        run: dict[str, Any],
        spec: WorkflowSpec,
        records: dict[str, StepRecord],
        rationale: list[dict[str, Any]],
        gates: dict[str, dict[str, Any]] | None,
        facts_decided: dict[str, str] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A person decided (a review, an approval): the run runs again from its records, here, in the
        background; `fields` are what the decision changes in the run record besides."""
        run_id = run["id"]
        self._owned[run_id] = None
        await self._store.update(
            run_id,
            status=RUNNING,
            steps=_ordered(spec, records),
            owner=self.owner,
            lease_expires_at=time.time() + self.lease_s,
            **fields,
        )
        self._settled[run_id] = asyncio.Event()
        resume = self._execute(
            run_id,
            spec,
            run["input"],
            run["delegation_depth"],
            None,
            records,
            rationale,
            facts_decided,
            RunBudget.from_record(run.get("budget"), run["created_at"]),
            gates,
        )
        self._background(resume)
        return await self.get(run_id)

    async def wait(self, run_id: str, timeout_s: float) -> dict[str, Any]:
        """The run once it is no longer running, or as it is when `timeout_s` has passed."""
        settled = self._settled.get(run_id)
        if settled is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await settled.wait()
            except TimeoutError:
                pass
            return await self.get(run_id)
        deadline = time.monotonic() + timeout_s
        while True:
            run = await self.get(run_id)
            if run["status"] != RUNNING or time.monotonic() >= deadline:
                return run
            await asyncio.sleep(0.05)

    async def get(self, run_id: str) -> dict[str, Any]:
        run = await self._store.get(run_id)
        if run is None:
            raise AccordError("not_found", f"no run {run_id!r}")
        return run

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        return await self._store.recent(limit)

    async def maintain(self, interval_s: float | None = None) -> None:
        """Hold this replica's leases and take over abandoned runs, until cancelled: every `interval_s`
        (a third of the lease), renew the leases of the runs executing here, and claim and resume every
        running run that is this replica's from before a restart or whose lease has expired."""
        interval = interval_s or self.lease_s / 3
        while True:
            try:
                await self.renew_leases()
                await self.take_over()
                await self.expire_approvals()
            except Exception:  # the store being briefly unreachable must not end lease keeping
                logger.exception("lease maintenance failed")
            await asyncio.sleep(interval)

    async def renew_leases(self) -> None:
        lost = await self._store.renew(list(self._owned), self.owner, time.time() + self.lease_s)
        for run_id in lost:
            logger.warning("lease lost; another replica took the run over", extra={"run_id": run_id})
            self._abandon(run_id)

    async def take_over(self) -> list[str]:
        """Claim and resume the running runs this replica may take; returns their ids."""
        taken = []
        for run_id in await self._store.claimable(self.owner, time.time()):
            if run_id in self._owned:
                continue
            self._owned[run_id] = None
            if await self._store.claim(run_id, self.owner, time.time(), self.lease_s):
                taken.append(run_id)
                self._background(self._resume(run_id))
            else:
                del self._owned[run_id]
        return taken

    async def _resume(self, run_id: str) -> None:
        run = await self.get(run_id)
        spec = self.workflows.get(run["workflow"])
        records = {step["id"]: StepRecord.from_dict(step) for step in run["steps"]}
        rationale = list(run["rationale"])
        if spec is None:
            error = AccordError("unknown_workflow", f"workflow {run['workflow']!r} is no longer served")
            with contextlib.suppress(LeaseLost):
                await self._finish_failed(run_id, error, records, rationale)
            self._owned.pop(run_id, None)
            return
        in_flight = sorted(sid for sid, record in records.items() if record.status == RUNNING)
        rationale.append(
            {
                "at": time.time(),
                "step": None,
                "kind": "resume",
                "detail": f"resumed by {self.owner}; in flight: {', '.join(in_flight) or '-'}",
            }
        )
        await self._audit.append(
            AuditEvent("orchestrator", "run.resume", RUNNING, run_id=run_id, details={"owner": self.owner})
        )
        self._settled.setdefault(run_id, asyncio.Event())
        budget = RunBudget.from_record(run.get("budget"), run["created_at"])
        await self._execute(
            run_id,
            spec,
            run["input"],
            run["delegation_depth"],
            None,
            records,
            rationale,
            budget=budget,
            approvals=run.get("approvals"),
        )

    def _abandon(self, run_id: str) -> None:
        task = self._owned.pop(run_id, None)
        if task is not None and not task.done():
            task.cancel()

    async def aclose(self) -> None:
        """Stop executing and hand this replica's running runs back: their leases end now, so another
        replica (or this one, restarted) takes them over at once rather than when the leases expire."""
        owned = list(self._owned)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # a store already gone leaves the leases to expire
            await self._store.release(owned, self.owner)

    def _background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _create(
        self, spec: WorkflowSpec, data: dict[str, Any], actor: str, depth: int, budget: BudgetSpec | None
    ) -> tuple[str, RunBudget]:
        run_id = str(uuid.uuid4())
        steps = [StepRecord(step.id, step.skill).as_dict() for step in spec.steps]
        self._owned[run_id] = None
        created_at = time.time()
        limits = RunBudget(spec.budget.tightened(budget), created_at)
        await self._store.create(
            {
                "id": run_id,
                "workflow": spec.name,
                "status": RUNNING,
                "actor": actor,
                "input": data,
                "steps": steps,
                "created_at": created_at,
                "delegation_depth": depth,
                "budget": limits.record(),
                "approvals": {},
                "conflicts": [],
                "rationale": [],
                "owner": self.owner,
                "lease_expires_at": time.time() + self.lease_s,
            }
        )
        self._settled[run_id] = asyncio.Event()
        # Audited while the steps already run (agents take longer than an append): off the critical path,
        # and still before the run's last record, which waits for it.
        event = AuditEvent(actor, "run.start", "allowed", run_id=run_id, details={"depth": depth})
        self._opening[run_id] = asyncio.create_task(self._audit.append(event))
        return run_id, limits

    async def _execute(
        self,
        run_id: str,
        spec: WorkflowSpec,
        data: dict[str, Any],
        depth: int,
        listener: StepListener | None,
        records: dict[str, StepRecord] | None = None,
        rationale: list[dict[str, Any]] | None = None,
        facts_decided: dict[str, str] | None = None,
        budget: RunBudget | None = None,
        approvals: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._owned[run_id] = asyncio.current_task()
        recorder = _Recorder(self._store, run_id, spec, self.owner, lambda: self._abandon(run_id))

        async def on_step(record: StepRecord) -> None:
            recorder.changed(execution)
            if listener is not None:
                await listener(record)

        execution = Execution(
            run_id,
            spec,
            data,
            self._dispatcher,
            on_step,
            records or {},
            rationale if rationale else [],
            budget,
            dict(approvals or {}),
            self.prices,
        )
        with workflow_run(run_id, spec.name) as span:
            try:
                await self._run_execution(run_id, spec, data, depth, execution, recorder, facts_decided)
            finally:
                if execution.budget is not None:
                    _record_tightest(span, execution.budget)

    async def _run_execution(
        self,
        run_id: str,
        spec: WorkflowSpec,
        data: dict[str, Any],
        depth: int,
        execution: Execution,
        recorder: _Recorder,
        facts_decided: dict[str, str] | None,
    ) -> None:
        try:
            # Every request this run sends carries its depth + 1: a delegation loop stops at the limit.
            with delegating(depth + 1):
                await execution.run()
            await recorder.drain()
            await self._opened(run_id)
            await self._settle(run_id, spec, data, execution, facts_decided or {})
        except LeaseLost:
            await recorder.drain()
            logger.warning("lease lost; another replica took the run over", extra={"run_id": run_id})
        except BudgetExceeded as exceeded:
            await recorder.drain()
            await self._opened(run_id)
            with contextlib.suppress(LeaseLost):
                await self._finish_stopped(run_id, exceeded, execution)
        except asyncio.CancelledError:
            await recorder.drain()
            current = asyncio.current_task()
            if run_id in self._owned or current is None:
                raise
            # Cancelled because another replica owns the run now: nothing more is written here.
            current.uncancel()
            logger.warning("lease lost; another replica took the run over", extra={"run_id": run_id})
        except Exception as exc:
            await recorder.drain()
            await self._opened(run_id)
            error = exc if isinstance(exc, AccordError) else AccordError("internal_error")
            with contextlib.suppress(LeaseLost):
                await self._finish_failed(run_id, error, execution.records, execution.rationale)
            if not isinstance(exc, AccordError):
                raise
        finally:
            self._owned.pop(run_id, None)
            # Waiters already hold the event; later callers find the run settled in the store.
            settled = self._settled.pop(run_id, None)
            if settled is not None:
                settled.set()

    async def _opened(self, run_id: str) -> None:
        """Wait for the run's `run.start` audit record, so its last record follows it in the chain."""
        opening = self._opening.pop(run_id, None)
        if opening is not None:
            await asyncio.gather(opening, return_exceptions=True)

    async def _settle(
        self,
        run_id: str,
        spec: WorkflowSpec,
        data: dict[str, Any],
        execution: Execution,
        facts_decided: dict[str, str],
    ) -> None:
        """After the graph: wait for review, or reconcile facts, synthesize and complete."""
        records = execution.records
        pending = [record for record in records.values() if record.status == WAITING_REVIEW]
        steps = _ordered(spec, records)
        if pending:
            reason = str((pending[0].review or {}).get("reason", "review"))
            review = {
                "reason": reason,
                "steps": [{"step": r.id, **(r.review or {})} for r in pending],
                "requested_at": time.time(),
            }
            await self._request_review(run_id, review, steps=steps, rationale=execution.rationale)
            return
        if any(record.status == WAITING_APPROVAL for record in records.values()):
            await self._request_approval(run_id, execution, steps=steps)
            return
        outputs = execution.outputs
        agents = {sid: record.agent for sid, record in records.items()}
        reconciliation = reconcile(spec.facts, outputs, agents, facts_decided)
        for conflict in reconciliation.conflicts:
            rule = conflict["rule"] or "no rule applies"
            execution.note(
                None, "conflict", f"{conflict['fact']}: {rule}: {conflict['detail']}", fact=conflict["fact"]
            )
        if reconciliation.unresolved:
            review = {
                "reason": "unresolved_conflict",
                "facts": [c["fact"] for c in reconciliation.unresolved],
                "detail": "; ".join(c["detail"] for c in reconciliation.unresolved),
                "requested_at": time.time(),
            }
            await self._request_review(
                run_id,
                review,
                steps=steps,
                conflicts=reconciliation.conflicts,
                rationale=execution.rationale,
            )
            return
        degraded = _degradation(spec, records)
        if degraded is not None:
            execution.note(None, "partial", degraded["detail"], missing=degraded["missing"])
        context = SynthesisInput(data, outputs, {s["id"]: s for s in steps}, reconciliation.facts)
        faults.reached("during_synthesis")
        result = SYNTHESIZERS[spec.synthesis](context)
        if degraded is not None:
            result = {**result, "degraded": degraded}
        gate = spec.approval_after(SYNTHESIS)
        if gate is not None and gate.applies(result) and gate.id not in execution.approvals:
            execution.approvals[gate.id] = approval_request(gate, SYNTHESIS)
            execution.note(None, "approval", f"the result waits for approval {gate.id}", gate=gate.id)
            await self._request_approval(
                run_id, execution, steps=steps, result=result, conflicts=reconciliation.conflicts
            )
            return
        await self._store.update(
            run_id,
            fence=self.owner,
            status=COMPLETED,
            result=result,
            steps=steps,
            conflicts=reconciliation.conflicts,
            rationale=execution.rationale,
            review=None,
            finished_at=time.time(),
            budget=self._spent(execution),
        )
        await self._audit.append(
            AuditEvent("orchestrator", "run.complete", COMPLETED, run_id=run_id, details=_summary(result))
        )

    def _spent(self, execution: Execution) -> dict[str, Any]:
        """The run's final budget record, reported to `on_budget`."""
        assert execution.budget is not None
        record = execution.budget.record()
        if self.on_budget is not None:
            self.on_budget(record)
        return record

    async def _finish_stopped(self, run_id: str, exceeded: BudgetExceeded, execution: Execution) -> None:
        """Record the run as stopped by its budget, with what it spent, and audit the stop."""
        budget = self._spent(execution)
        await self._store.update(
            run_id,
            fence=self.owner,
            status=BUDGET_EXCEEDED,
            error={"reason": exceeded.reason, "message": exceeded.detail, "limit": exceeded.limit},
            steps=_ordered(execution.workflow, execution.records),
            rationale=execution.rationale,
            review=None,
            finished_at=time.time(),
            budget=budget,
        )
        await self._audit.append(
            AuditEvent(
                "orchestrator",
                "run.budget_stop",
                BUDGET_EXCEEDED,
                exceeded.reason,
                run_id=run_id,
                details=budget,
            )
        )

    async def _request_approval(self, run_id: str, execution: Execution, **fields: Any) -> None:
        """Stop the run in `waiting_approval` with its gates, and audit each gate this execution opened."""
        await self._store.update(
            run_id,
            fence=self.owner,
            status=WAITING_APPROVAL,
            approvals=execution.approvals,
            rationale=execution.rationale,
            budget=execution.budget.record() if execution.budget else None,
            **fields,
        )
        for name in execution.new_gates:
            gate = execution.approvals[name]
            details = {"gate": name, "after": gate["after"], "expires_at": gate["expires_at"]}
            await self._audit.append(
                AuditEvent(
                    "orchestrator", "run.approval_requested", WAITING_APPROVAL, run_id=run_id, details=details
                )
            )

    async def decide(self, run_id: str, gate: str, decision: Any, reason: Any, actor: str) -> dict[str, Any]:
        """A person's decision on one approval gate (`approve` or `reject`, with a reason), recorded with
        who decided; the run then goes on (a step gate) or ends (the gate after synthesis)."""
        try:
            if decision not in APPROVAL_DECISIONS:
                raise AccordError("invalid_input", "decision must be approve or reject")
            if not isinstance(reason, str) or not reason.strip() or len(reason) > _MAX_REASON:
                raise AccordError("invalid_input", f"a reason of 1 to {_MAX_REASON} characters is required")
            async with self._reviewing:
                return await self._decide(run_id, gate, APPROVAL_DECISIONS[decision], reason.strip(), actor)
        except AccordError as error:
            # A refused decision changes nothing but is on the record, like every refusal.
            details = {"gate": gate[:64], "detail": error.detail[:_MAX_REASON]}
            await self._audit.append(
                AuditEvent(actor, "run.approval", "denied", error.reason, run_id=run_id[:64], details=details)
            )
            raise

    async def _decide(self, run_id: str, gate: str, verdict: str, reason: str, actor: str) -> dict[str, Any]:
        run = await self.get(run_id)
        spec = self.workflows.get(run["workflow"])
        approvals = {name: dict(state) for name, state in (run.get("approvals") or {}).items()}
        state = approvals.get(gate)
        if run["status"] != WAITING_APPROVAL or spec is None or state is None or state["status"] != "pending":
            raise AccordError("approval_not_pending", f"run {run_id} has no pending approval {gate[:64]!r}")
        state.update(status=verdict, decided_by=actor, reason=reason, decided_at=time.time())
        rejected = verdict == "rejected"
        await self._audit.append(
            AuditEvent(
                actor,
                "run.approval",
                verdict,
                "approval_rejected" if rejected else None,
                run_id=run_id,
                details={"gate": gate, "after": state["after"], "reason": reason[:_MAX_REASON]},
            )
        )
        rationale = [
            *run["rationale"],
            {
                "at": time.time(),
                "step": None,
                "kind": "approval",
                "detail": f"{actor} {verdict} {gate}: {reason}",
                "gate": gate,
            },
        ]
        if state["after"] == SYNTHESIS:
            return await self._settle_approved_result(run_id, run, approvals, rationale, rejected, actor)
        records = {step["id"]: StepRecord.from_dict(step) for step in run["steps"]}
        _apply_gate(records, state["after"], rejected, actor, reason)
        return await self._resume_decided(run, spec, records, rationale, approvals, approvals=approvals)

    async def _settle_approved_result(
        self,
        run_id: str,
        run: dict[str, Any],
        approvals: dict[str, dict[str, Any]],
        rationale: list[dict[str, Any]],
        rejected: bool,
        actor: str,
    ) -> dict[str, Any]:
        """The gate after synthesis decided: the run completes with its result, or fails."""
        error = {"reason": "approval_rejected", "message": f"the result was rejected by {actor}"}
        status = FAILED if rejected else COMPLETED
        await self._store.update(
            run_id,
            status=status,
            approvals=approvals,
            rationale=rationale,
            error=error if rejected else None,
            finished_at=time.time(),
        )
        await self._audit.append(
            AuditEvent(
                "orchestrator",
                "run.complete",
                status,
                "approval_rejected" if rejected else None,
                run_id=run_id,
            )
        )
        return await self.get(run_id)

    async def expire_approvals(self, now: float | None = None) -> list[tuple[str, str]]:
        """Give every gate that waited past its deadline the outcome its workflow names."""
        expired = []
        moment = time.time() if now is None else now
        for run in await self._store.with_status(WAITING_APPROVAL):
            for gate, state in (run.get("approvals") or {}).items():
                if state.get("status") == "pending" and float(state.get("expires_at", 0)) <= moment:
                    decision = str(state.get("on_expiry", "reject"))
                    with contextlib.suppress(AccordError):  # decided meanwhile, by a person or a replica
                        await self.decide(run["id"], gate, decision, "the gate expired unanswered", "expiry")
                        expired.append((run["id"], gate))
                    break  # one decision per run per pass: it may have resumed the run
        return expired

    async def _request_review(self, run_id: str, review: dict[str, Any], **fields: Any) -> None:
        """Stop the run in `waiting_review` with what the reviewer needs, and audit the request."""
        await self._store.update(run_id, fence=self.owner, status=WAITING_REVIEW, review=review, **fields)
        await self._audit.append(
            AuditEvent(
                "orchestrator", "run.review_requested", WAITING_REVIEW, review["reason"], run_id=run_id
            )
        )

    async def _finish_failed(
        self,
        run_id: str,
        error: AccordError,
        records: dict[str, StepRecord],
        rationale: list[dict[str, Any]],
        fenced: bool = True,
    ) -> None:
        """Record the run as failed; `fenced`: only while this replica owns it (a run it executes)."""
        run = await self._store.get(run_id)
        spec = self.workflows.get(run["workflow"]) if run else None
        steps = _ordered(spec, records) if spec else [r.as_dict() for r in records.values()]
        await self._store.update(
            run_id,
            fence=self.owner if fenced else None,
            status=FAILED,
            error={"reason": error.reason, "message": error.detail},
            steps=steps,
            rationale=rationale,
            review=None,
            finished_at=time.time(),
        )
        await self._audit.append(
            AuditEvent("orchestrator", "run.complete", FAILED, error.reason, run_id=run_id)
        )


def _record_tightest(span: Span, budget: RunBudget) -> None:
    """The run span's budget figures: the limit the run came closest to (the one that stopped it)."""
    spent = budget.record()["spent"]
    ratios = {
        name: (float(spent[name]), float(limit))
        for name, limit in budget.limits.limits().items()
        if name in spent and limit > 0
    }
    if ratios:
        name = (
            budget.exceeded
            if budget.exceeded in ratios
            else max(ratios, key=lambda n: ratios[n][0] / ratios[n][1])
        )
        used, allowed = ratios[name]
        record_budget(used, allowed, unit=name, span=span)


class _Recorder:
    """Writes a running run's steps as they change, coalescing bursts: at most one write in flight and at
    most one every `RECORD_INTERVAL_S`, each carrying every change made meanwhile (a fan-out of hundreds
    settles in a handful of writes). The final state is written by the run itself after `drain`."""

    def __init__(
        self, store: RunStore, run_id: str, spec: WorkflowSpec, owner: str, lost: Callable[[], None]
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._spec = spec
        self._owner = owner
        self._lost = lost
        self._latest: Execution | None = None
        self._writer: asyncio.Task[None] | None = None
        self._draining = asyncio.Event()

    def changed(self, execution: Execution) -> None:
        self._latest = execution
        if not self._draining.is_set() and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while self._latest is not None and not self._draining.is_set():
            execution, self._latest = self._latest, None
            steps = _ordered(self._spec, execution.records)
            try:
                budget = execution.budget.record() if execution.budget else None
                await self._store.update(
                    self._run_id,
                    fence=self._owner,
                    steps=steps,
                    rationale=list(execution.rationale),
                    budget=budget,
                )
            except LeaseLost:
                self._lost()  # another replica owns the run now: this execution stops dispatching
                return
            if any((step.get("inflight") or {}).get("task_id") for step in steps):
                faults.reached("after_accepted")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECORD_INTERVAL_S):
                    await self._draining.wait()

    async def drain(self) -> None:
        """Stop writing and let a write in flight finish (the final update follows it, so order is kept)."""
        self._draining.set()
        self._latest = None
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


def _parse_decision(decision: dict[str, Any], run: dict[str, Any]) -> tuple[str, dict[str, str]]:
    verdict = decision.get("decision")
    if verdict not in DECISIONS:
        raise AccordError("invalid_input", f"decision must be one of {', '.join(DECISIONS)}")
    facts = decision.get("facts") or {}
    if not isinstance(facts, dict) or not all(isinstance(v, str) for v in facts.values()):
        raise AccordError(
            "invalid_input", "facts maps each conflicting fact to the step whose report to keep"
        )
    review = run.get("review") or {}
    if verdict == "accept" and review.get("reason") == "unresolved_conflict":
        missing = sorted(set(review.get("facts", [])) - set(facts))
        if missing:
            raise AccordError("invalid_input", f"choose a report for {', '.join(missing)}")
        sources = {
            c["fact"]: {r["step"] for r in c["reports"]}
            for c in run["conflicts"]
            if c["status"] == "unresolved"
        }
        wrong = sorted(f for f, step in facts.items() if step not in sources.get(f, set()))
        if wrong:
            raise AccordError("invalid_input", f"no such report for {', '.join(wrong)}")
    return verdict, dict(facts)


def _apply_verdict(
    records: dict[str, StepRecord],
    rationale: list[dict[str, Any]],
    verdict: str,
    actor: str,
    note: Any,
) -> None:
    for record in records.values():
        if record.status == "blocked":
            record.status, record.blocked_by = "pending", None
        if record.status != WAITING_REVIEW:
            continue
        reason = (record.review or {}).get("reason")
        record.review = {**(record.review or {}), "decided": verdict, "by": actor, "note": note}
        if verdict == "accept":
            record.status = COMPLETED
            if reason == "no_route":
                # Accepting an output that names no branch runs none of them.
                record.route = {"field": None, "value": None, "selected": [], "not_taken": []}
            if record.loop is not None and reason == "max_iterations_reached":
                record.loop["state"] = "max_iterations_reached"
        else:
            record.status, record.output = FAILED, None
            record.error = {"reason": "review_rejected", "message": f"rejected by {actor}"}
        rationale.append(
            {"at": time.time(), "step": record.id, "kind": "review", "detail": f"{actor} decided {verdict}"}
        )


def _degradation(spec: WorkflowSpec, records: dict[str, StepRecord]) -> dict[str, Any] | None:
    """What the result lacks, when steps it would have had failed (a branch not taken is not a loss); raises
    `insufficient_results` when fewer steps than the workflow's `partial.at_least` completed."""
    missing = [
        sid
        for sid, record in records.items()
        if record.status == FAILED
        or (record.status == "skipped" and (record.skipped or {}).get("reason") != "branch_not_taken")
    ]
    partial = spec.partial
    if partial is not None:
        completed = [sid for sid in partial.steps if records[sid].status == COMPLETED]
        if len(completed) < partial.at_least:
            raise AccordError(
                "insufficient_results",
                f"{len(completed)} of {', '.join(partial.steps)} completed; the workflow needs "
                f"at least {partial.at_least}",
            )
    if not missing:
        return None
    detail = f"partial result: {', '.join(missing)} did not complete"
    return {"missing": missing, "detail": detail}


def _apply_gate(records: dict[str, StepRecord], step: str, rejected: bool, actor: str, reason: str) -> None:
    """A step gate's decision on its step; steps blocked behind a person look at their inputs again."""
    record = records[step]
    if rejected:
        record.status, record.output = FAILED, None
        record.error = {
            "reason": "approval_rejected",
            "message": f"rejected by {actor}: {reason}"[:_MAX_REASON],
        }
    else:
        record.status = COMPLETED
    for other in records.values():
        if other.status == "blocked":
            other.status, other.blocked_by = "pending", None


def _check_input(spec: WorkflowSpec, data: Any) -> None:
    problems = sorted(Draft202012Validator(spec.input_schema).iter_errors(data), key=lambda e: list(e.path))
    if problems:
        raise AccordError(
            "invalid_input",
            f"input does not match workflow {spec.name!r}",
            problems=[
                {
                    "path": "/".join(str(p) for p in problem.absolute_path) or "(root)",
                    "message": problem.message,
                }
                for problem in problems[:20]
            ],
        )


def _ordered(spec: WorkflowSpec, records: dict[str, StepRecord]) -> list[dict[str, Any]]:
    return [records.get(step.id, StepRecord(step.id, step.skill)).as_dict() for step in spec.steps]


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    reasons = result.get("reasons")
    rules = [r["rule"] for r in reasons] if isinstance(reasons, list) else []
    return {"decision": result.get("decision"), "status": result.get("status"), "rules": rules}
