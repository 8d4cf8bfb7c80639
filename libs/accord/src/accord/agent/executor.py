"""Runs skills behind the A2A server: one task per request, the output as the artifact named `result`.

Each task's tool calls carry a token derived from the grant in its message (see `accord.agent.grants`); a
task without a grant may call no tool.

A message carrying an idempotency key (`accord.idempotency_key`, set per dispatch attempt by the
orchestrator) runs its skill at most once per caller and key: a second delivery (a resumed orchestrator
sending an in-flight step again, in a new signed envelope) gets a task of its own that carries the first
delivery's outcome, waiting for it if it is still running. The same key with another skill or input is
refused (`idempotency_conflict`). Keys are scoped by the caller the gateway signed the message for, and
remembered for the last `IDEMPOTENCY_MEMORY` deliveries of this process.

The model usage a skill reports (`ToolBox.report_usage`) goes back with the answer: in the result
artifact's metadata (`accord.usage`), or next to the error of a failed task; a step's message may set its
allowance of tokens (`accord.budget.tokens`, see `accord.usage`).

Failures are reported as a FAILED task whose status message carries
a data part `{"error": {"reason", "message"}}`. Exception text never leaves the process: the SDK would
otherwise put `str(exc)` into an InternalError that reaches the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from a2a.helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Message, Part, TaskState
from opentelemetry.trace import Span, SpanKind
from pydantic import BaseModel, ValidationError

from accord.a2a_server import ENVELOPE_STATE_KEY
from accord.agent.grants import GrantTokens, NoGrant
from accord.agent.skills import Skill
from accord.agent.tools import TokenProvider, ToolBox, ToolCaller
from accord.errors import AccordError
from accord.message_signing import Envelope
from accord.payloads import (
    BUDGET_METADATA_KEY,
    RESULT_ARTIFACT,
    data_part,
    first_data,
    message_grant,
    message_idempotency_key,
    metadata_of,
    requested_skill,
)
from accord.telemetry import invoke_agent, record_usage
from accord.usage import USAGE_METADATA_KEY, Usage, UsageMeter, allowance_from_budget

logger = logging.getLogger(__name__)

IDEMPOTENCY_MEMORY = 10_000


@dataclass(frozen=True)
class _Outcome:
    """How one delivery of a skill request ended: its result part, or the error it failed with."""

    result: Part | None = None
    error: AccordError | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass
class _Delivery:
    fingerprint: str
    # None when the first delivery ended without an outcome (cancelled): a later one runs the skill.
    outcome: asyncio.Future[_Outcome | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Deliveries:
    """First deliveries by (caller, idempotency key), the oldest forgotten beyond `limit`."""

    def __init__(self, limit: int = IDEMPOTENCY_MEMORY) -> None:
        self._limit = limit
        self._entries: OrderedDict[tuple[str, str], _Delivery] = OrderedDict()

    def get(self, key: tuple[str, str]) -> _Delivery | None:
        return self._entries.get(key)

    def begin(self, key: tuple[str, str], fingerprint: str) -> _Delivery:
        delivery = _Delivery(fingerprint)
        self._entries[key] = delivery
        self._entries.move_to_end(key)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
        return delivery

    def abandon(self, key: tuple[str, str], delivery: _Delivery) -> None:
        if not delivery.outcome.done():
            delivery.outcome.set_result(None)
        if self._entries.get(key) is delivery:
            del self._entries[key]


class SkillExecutor(AgentExecutor):
    """Dispatches each message to the skill named in its metadata, with the tool token of its grant."""

    def __init__(
        self,
        skills: Mapping[str, Skill],
        tools: ToolCaller,
        grant_tokens: GrantTokens,
        fault_delay_ms: int = 0,
        agent: str = "agent",
    ) -> None:
        self._agent = agent
        self._skills = dict(skills)
        self._tools = tools
        self._grant_tokens = grant_tokens
        self._fault_delay_s = fault_delay_ms / 1000
        self._deliveries = _Deliveries()
        # How often each skill's handler ran, and how many deliveries were answered from an earlier one.
        self.executions: Counter[str] = Counter()
        self.attached: Counter[str] = Counter()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = await _open_task(context, event_queue)
        try:
            skill, request = self._parse(context.message)
        except AccordError as error:
            await _fail(updater, error)
            return
        assert context.message is not None  # _parse refuses a request without one
        key = _delivery_key(context)
        if key is None:
            await updater.start_work()
            await _finish(updater, await self._outcome(skill, request, context.message, updater.task_id))
            return
        fingerprint = _fingerprint(context.message)
        first = self._deliveries.get(key)
        if first is not None:
            if first.fingerprint != fingerprint:
                detail = "this idempotency key was used for another request"
                await _fail(updater, AccordError("idempotency_conflict", detail))
                return
            await updater.start_work()
            earlier = await asyncio.shield(first.outcome)
            if earlier is not None:
                self.attached[skill.skill_id] += 1
                await _finish(updater, earlier)
                return
        delivery = self._deliveries.begin(key, fingerprint)
        try:
            await updater.start_work()
            outcome = await self._outcome(skill, request, context.message, updater.task_id)
        except BaseException:
            self._deliveries.abandon(key, delivery)
            raise
        delivery.outcome.set_result(outcome)
        await _finish(updater, outcome)

    async def _outcome(self, skill: Skill, request: BaseModel, message: Message, task_id: str) -> _Outcome:
        self.executions[skill.skill_id] += 1
        meter = UsageMeter(allowance_from_budget(metadata_of(message).get(BUDGET_METADATA_KEY)))
        try:
            result = await self._run(skill, request, self._tokens_for(message), meter)
            return _Outcome(result=data_part(result), usage=meter.usage)
        except AccordError as error:
            return _Outcome(error=error, usage=meter.usage)
        except Exception:
            logger.exception("skill failed", extra={"skill": skill.skill_id, "task_id": task_id})
            failed = AccordError("agent_failed", f"skill {skill.skill_id} failed")
            return _Outcome(error=failed, usage=meter.usage)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        # The SDK has already cancelled the asyncio task running `execute`; record the outcome.
        if context.task_id is None or context.context_id is None:
            return
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    def _parse(self, message: Message | None) -> tuple[Skill, BaseModel]:
        if message is None:
            raise AccordError("invalid_input", "the request carries no message")
        skill_id = requested_skill(message)
        skill = self._skills.get(skill_id or "")
        if skill is None:
            raise AccordError("unknown_skill", f"this agent offers {sorted(self._skills)}")
        data = first_data(message.parts)
        if data is None:
            raise AccordError("invalid_input", "the message carries no JSON object data part")
        try:
            return skill, skill.input_model.model_validate(data)
        except ValidationError as exc:
            raise AccordError("invalid_input", _describe(exc)) from None

    def _tokens_for(self, message: Message) -> TokenProvider:
        grant = message_grant(message)
        return NoGrant() if grant is None else self._grant_tokens.for_grant(grant)

    async def _run(
        self, skill: Skill, request: BaseModel, tokens: TokenProvider, meter: UsageMeter
    ) -> dict[str, Any]:
        if self._fault_delay_s:
            await asyncio.sleep(self._fault_delay_s)
        toolbox = ToolBox(self._tools, skill.tools, tokens, meter)
        # The GenAI span of this agent doing the work (its caller's `invoke_agent` span is the CLIENT one).
        # It names the models used; the tokens and their cost are recorded once, on the caller's span, by
        # the orchestrator that checked and priced the report (totals add up every span's values).
        with invoke_agent(self._agent, skill=skill.skill_id, kind=SpanKind.INTERNAL) as span:
            try:
                output = await skill.handler(request, toolbox)
            finally:
                _record_models(span, meter.usage)
        try:
            payload = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
            return skill.output_model.model_validate(payload).model_dump(mode="json")
        except ValidationError:
            logger.error("skill output breaks its contract", extra={"skill": skill.skill_id})
            detail = f"skill {skill.skill_id} produced invalid output"
            raise AccordError("contract_violation", detail) from None


async def _open_task(context: RequestContext, event_queue: EventQueue) -> TaskUpdater:
    task = context.current_task
    if task is None:
        # A new task must reach the queue as a Task before any status update, or the SDK rejects it.
        history = [context.message] if context.message is not None else []
        task = new_task(
            task_id=context.task_id or "",
            context_id=context.context_id or "",
            state=TaskState.TASK_STATE_SUBMITTED,
            history=history,
        )
        await event_queue.enqueue_event(task)
    return TaskUpdater(event_queue, task.id, task.context_id)


def _delivery_key(context: RequestContext) -> tuple[str, str] | None:
    """(caller, idempotency key) of a message that carries one; the caller is the signed envelope's."""
    assert context.message is not None
    key = message_idempotency_key(context.message)
    if key is None:
        return None
    envelope = context.call_context.state.get(ENVELOPE_STATE_KEY) if context.call_context else None
    caller = envelope.sub if isinstance(envelope, Envelope) else ""
    return caller, key


def _fingerprint(message: Message) -> str:
    """What a repeated delivery must ask again: the same skill on the same input."""
    body = {"skill": requested_skill(message), "data": first_data(message.parts)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _record_models(span: Span, usage: Usage) -> None:
    if usage.by_model:
        record_usage(model=",".join(sorted(usage.by_model)), span=span)


async def _finish(updater: TaskUpdater, outcome: _Outcome) -> None:
    if outcome.result is None:
        await _fail(updater, outcome.error or AccordError("agent_failed"), outcome.usage)
        return
    metadata = {USAGE_METADATA_KEY: outcome.usage.to_json()} if outcome.usage.by_model else None
    await updater.add_artifact([outcome.result], name=RESULT_ARTIFACT, metadata=metadata)
    await updater.complete()


async def _fail(updater: TaskUpdater, error: AccordError, usage: Usage | None = None) -> None:
    body: dict[str, Any] = {"error": {"reason": error.reason, "message": error.detail}}
    if isinstance(error.context.get("limit"), str):
        body["error"]["limit"] = error.context["limit"]  # which budget, for a budget_exceeded
    if usage is not None and usage.by_model:
        body["usage"] = usage.to_json()
    await updater.failed(updater.new_agent_message([data_part(body)]))


def _describe(exc: ValidationError) -> str:
    """Field locations and messages only: the offending input values are not echoed back."""
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
    ]
    return "input does not match the skill's schema: " + "; ".join(problems)
